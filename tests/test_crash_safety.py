"""Crash safety of a run's directory: one writer per workdir, torn small files, a corrupt newest
checkpoint, a best checkpoint ahead of the periodic ones, and workdirs that are self-contained
(copied, moved, overwritten without touching anything outside them)."""

import errno
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rrd_jax.cli import train
from rrd_jax.config import loading
from rrd_jax.run import checkpoint, lifecycle
from rrd_jax.train import prepare
from rrd_jax.util import errors, files
from rrd_jax.util.errors import UserError
from tests.helpers import ROOT, tiny_config
from tests.test_cli_errors import TINY_FLAGS, assert_one_sentence_error

STEPS = {"train.num_steps": 6, "train.log_every_steps": 2, "eval.every_steps": 3,
         "checkpoint.every_steps": 2, "checkpoint.keep": 3}
quiet = lambda *_: None  # noqa: E731


def _params(workdir):
  return prepare.restore_run_state(workdir)[0].params


@pytest.fixture(scope="module")
def reference(tiny_dataset_dir, tmp_path_factory):
  """An uninterrupted 6-step run: checkpoints at 2, 4, 6, evaluations at 3 and 6."""
  workdir = str(tmp_path_factory.mktemp("reference") / "w")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **STEPS), workdir, log=quiet)
  return workdir


def test_a_second_trainer_on_a_workdir_is_refused_with_the_holders_pid(tmp_path):
  config = tiny_config("/data")
  workdir, resume, lock = lifecycle.prepare_workdir(str(tmp_path / "w"), config, log=quiet)
  assert not resume and lock is not None
  with pytest.raises(UserError, match=rf"workdir .* is in use by another trainer \(pid {os.getpid()}\)"):
    lifecycle.prepare_workdir(workdir, config, log=quiet)
  os.close(lock)  # what the kernel does when the holder dies
  _, _, again = lifecycle.prepare_workdir(workdir, config, log=quiet)
  os.close(again)


def test_a_torn_config_json_is_one_sentence(tmp_path):
  workdir = str(tmp_path)
  for content, reason in (("", "it is empty"), ('{"config": {"seed"', "not valid JSON"),
                          ('{"other": 1}', "no 'config' section")):
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(content)
    with pytest.raises(UserError, match=reason) as e:
      loading.read_run_config(workdir)
    assert os.path.join(workdir, "config.json") in str(e.value)


def test_atomic_writes_leave_the_old_file_on_a_failure(tmp_path):
  path = str(tmp_path / "x.json")
  files.write_json(path, {"a": 1})
  with pytest.raises(RuntimeError):
    with files.atomic_open(path, encoding="utf-8") as f:
      f.write('{"a": ')
      raise RuntimeError("killed mid-write")
  assert files.read_json(path, "x", "y") == {"a": 1}
  assert os.listdir(tmp_path) == ["x.json"]  # no temporary left behind


def _copy(reference, tmp_path, name):
  workdir = str(tmp_path / name)
  shutil.copytree(reference, workdir)
  return workdir


def test_a_corrupt_newest_checkpoint_is_moved_aside_and_the_previous_one_resumes(
    reference, tiny_dataset_dir, tmp_path, capsys):
  workdir = _copy(reference, tmp_path, "corrupt")
  array_files = [p for p in glob.glob(os.path.join(workdir, "checkpoints", "steps", "6", "**"),
                                      recursive=True) if os.path.isfile(p) and "state" in p]
  for path in array_files:  # truncate every array file of step 6
    with open(path, "r+b") as f:
      f.truncate(max(0, os.path.getsize(path) // 3))
  results = train.train_and_evaluate(tiny_config(tiny_dataset_dir, **STEPS), workdir, log=print)
  out = capsys.readouterr()
  warnings = [l for l in out.err.splitlines() if l.startswith("warning: checkpoint step 6")]
  assert len(warnings) == 1 and "moved it to" in warnings[0], out.err[-2000:]
  assert "from step 4" in out.out
  moved = os.listdir(os.path.join(workdir, "checkpoints", "corrupt"))
  assert any(name.startswith("steps-6-") for name in moved)  # kept, not deleted
  # resumed from 4, it ends where the uninterrupted run ended
  jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(reference))
  with open(os.path.join(reference, "final_metrics.json"), encoding="utf-8") as f:
    assert results["eval/loss"] == json.load(f)["eval/loss"]


def test_a_best_checkpoint_ahead_of_the_periodic_ones_does_not_block_resume(
    reference, tiny_dataset_dir, tmp_path):
  """Killed right after the evaluation at step 6 saved best/6, before steps/6 was written."""
  workdir = _copy(reference, tmp_path, "best_ahead")
  shutil.rmtree(os.path.join(workdir, "checkpoints", "steps", "6"))
  os.remove(os.path.join(workdir, "final_metrics.json"))
  best = checkpoint.available_steps(os.path.join(workdir, "checkpoints"), "best")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **STEPS), workdir, log=quiet)
  assert checkpoint.available_steps(os.path.join(workdir, "checkpoints"), "best") == best
  jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(reference))


def test_a_copied_workdir_resumes_from_its_own_checkpoints(reference, tiny_dataset_dir,
                                                            tmp_path):
  original = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(reference, "**"),
                                                         recursive=True)}
  workdir = _copy(reference, tmp_path, "copy")
  _, facts = loading.read_run_config(workdir)
  assert facts["checkpoint_dir"] == "checkpoints"  # relative to the workdir
  more = tiny_config(tiny_dataset_dir, **dict(STEPS, **{"train.num_steps": 8}))
  train.train_and_evaluate(more, workdir, log=quiet)
  assert 8 in checkpoint.available_steps(os.path.join(workdir, "checkpoints"))
  # overwrite on the copy archives inside the copy only
  other = tiny_config(tiny_dataset_dir, seed=5, **dict(STEPS, **{"checkpoint.overwrite": True}))
  train.train_and_evaluate(other, workdir, log=quiet)
  archived = os.listdir(os.path.join(workdir, "archived"))
  assert len(archived) == 1
  assert os.path.isdir(os.path.join(workdir, "archived", archived[0], "checkpoints", "steps"))
  after = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(reference, "**"),
                                                      recursive=True)}
  assert after == original  # the original run was not touched


def test_a_relative_checkpoint_dir_resolves_against_the_workdir(tiny_dataset_dir, tmp_path,
                                                                 monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = tiny_config(tiny_dataset_dir, **dict(STEPS, **{"checkpoint.dir": "ckpt",
                                                          "train.num_steps": 2}))
  train.train_and_evaluate(config, str(tmp_path / "w"), log=quiet)
  assert checkpoint.available_steps(str(tmp_path / "w" / "ckpt")) == [2]
  assert not os.path.exists(tmp_path / "ckpt")


def test_overwrite_refuses_to_move_checkpoints_outside_the_workdir(tiny_dataset_dir, tmp_path):
  outside = str(tmp_path / "elsewhere")
  small = dict(STEPS, **{"checkpoint.dir": outside, "train.num_steps": 2})
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **small), str(tmp_path / "w"), log=quiet)
  again = tiny_config(tiny_dataset_dir, seed=9, **dict(small, **{"checkpoint.overwrite": True}))
  with pytest.raises(UserError, match="outside the workdir"):
    train.train_and_evaluate(again, str(tmp_path / "w"), log=quiet)
  assert checkpoint.available_steps(outside) == [2]


def test_a_run_that_saved_nothing_gives_way_to_a_rerun_with_another_config(tiny_dataset_dir,
                                                                           tmp_path, capsys):
  """E.g. a run stopped by a bad frame on its first batch, rerun with data.skip_bad_episodes."""
  workdir = str(tmp_path / "w")
  with pytest.raises(RuntimeError):
    with lifecycle.Run(tiny_config(tiny_dataset_dir, **STEPS), workdir, log=quiet) as run:
      run.write_config({})
      raise RuntimeError("the first batch failed")
  other = tiny_config(tiny_dataset_dir, **dict(STEPS, **{"train.num_steps": 2, "seed": 4}))
  train.train_and_evaluate(other, workdir, log=print)
  assert "Moved the previous run" in capsys.readouterr().out
  assert checkpoint.available_steps(os.path.join(workdir, "checkpoints")) == [2]
  # one that saved a checkpoint is still refused
  with pytest.raises(UserError, match="holds a run with a different config"):
    train.train_and_evaluate(tiny_config(tiny_dataset_dir, **STEPS), workdir, log=quiet)


# --- a full disk --------------------------------------------------------------------------------
def test_disk_full_errors_from_the_libraries_name_the_path():
  from_os = OSError(errno.ENOSPC, "No space left on device", "/runs/w/config.json.tmp")
  orbax = ValueError('RESOURCE_EXHAUSTED: Error writing "x" in OCDBT database at local file '
                     '"/runs/w/checkpoints/steps/4.orbax-checkpoint-tmp/": Failed writing: '
                     '"/runs/w/checkpoints/steps/4.orbax-checkpoint-tmp/d/ab": Failed to write '
                     "10 bytes to file 7: No space left on device [os_error_code='28']")
  tf_text = RuntimeError("{{function_node x}} /runs/w/tensorboard/events.v2; No space left on "
                         "device\n\tFailed to flush 1 events")
  try:
    try:
      raise from_os
    except OSError as e:
      raise RuntimeError("while saving") from e
  except RuntimeError as e:
    chained = e
  assert errors.disk_full_path(from_os) == "/runs/w/config.json.tmp"
  assert errors.disk_full_path(chained) == "/runs/w/config.json.tmp"
  assert errors.disk_full_path(orbax) == "/runs/w/checkpoints/steps/4.orbax-checkpoint-tmp/d/ab"
  assert errors.disk_full_path(tf_text) == "/runs/w/tensorboard/events.v2"
  assert errors.disk_full_path(OSError(errno.EACCES, "Permission denied", "/x")) is None
  assert errors.disk_full_path(ValueError("shapes differ")) is None


def test_any_disk_full_error_is_one_sentence_exit_2(capsys):
  @errors.cli_main
  def main():
    raise ValueError('Failed writing: "/runs/w/x": No space left on device')

  with pytest.raises(SystemExit) as exit_info:
    main()
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert lines == ["error: no space left on the disk for /runs/w/x; free some space and rerun "
                   "the same command"]


def test_a_json_write_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
  path = str(tmp_path / "final_metrics.json")
  files.write_json(path, {"old": 1})

  def full(_):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(files.os, "fsync", full)
  with pytest.raises(UserError, match=f"no space left on the disk for {path}; free some space"):
    files.write_json(path, {"new": 2})
  monkeypatch.undo()
  assert files.read_json(path, "x", "y") == {"old": 1}
  assert os.listdir(tmp_path) == ["final_metrics.json"]


def test_a_lock_that_does_not_fit_leaves_no_workdir(tiny_dataset_dir, tmp_path, monkeypatch):
  def full(*_):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(lifecycle.os, "write", full)
  workdir = str(tmp_path / "new")
  with pytest.raises(UserError, match=f"no space left on the disk for {workdir}"):
    lifecycle.Run(tiny_config(tiny_dataset_dir), workdir, log=quiet)
  assert not os.path.exists(workdir)


def test_a_checkpoint_that_does_not_fit_is_refused_and_the_rerun_resumes(
    reference, tiny_dataset_dir, tmp_path, monkeypatch):
  """The disk fills up after the save at step 2: the next save is refused before it starts,
  naming both sizes; once there is room again the rerun resumes from 2 and ends bitwise like the
  uninterrupted run."""
  real, checks = shutil.disk_usage, []

  def filling_up(path):
    checks.append(path)
    usage = real(path)
    return usage._replace(free=1000) if len(checks) > 1 else usage

  monkeypatch.setattr(checkpoint.shutil, "disk_usage", filling_up)
  workdir = str(tmp_path / "w")
  with pytest.raises(UserError) as error:
    train.train_and_evaluate(tiny_config(tiny_dataset_dir, **STEPS), workdir, log=quiet)
  assert re.fullmatch(  # the evaluation's best save at step 3 is the first after step 2
      f"no space left on the disk for {re.escape(workdir)}/checkpoints/best: it needs about "
      r"[1-9][0-9.]* MiB, 0\.0 MiB are free; free some space and rerun the same command \(it "
      r"resumes from step 2\)", str(error.value)), error.value
  assert checkpoint.available_steps(os.path.join(workdir, "checkpoints")) == [2]
  assert not glob.glob(os.path.join(workdir, "checkpoints", "steps", "*tmp*"))
  monkeypatch.undo()
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **STEPS), workdir, log=quiet)
  jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(reference))


def _mount_tmpfs(path, size):
  os.makedirs(path, exist_ok=True)
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                          capture_output=True, text=True, check=False)
  if result.returncode:
    pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or 'not permitted'})")


NO_SPACE_CHECK = """
import sys
from rrd_jax.cli import train
from rrd_jax.run import checkpoint
checkpoint._space_shortfall = lambda *_: None  # so that orbax's writer meets the full disk
sys.argv[0] = "rrd-train"
train.main()
"""


@pytest.mark.slow
def test_a_full_disk_under_the_cli_is_one_sentence_and_the_rerun_resumes(
    reference, tiny_dataset_dir, tmp_path):
  """A real full disk (a tmpfs with room for the save at step 2 and not the next): the next save
  is refused by the space check, or (check off) fails in orbax's writer; either way one sentence,
  exit 2, within seconds, the save at step 2 intact; after a bigger remount the rerun resumes."""
  save_bytes = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in
                   os.walk(os.path.join(reference, "checkpoints", "steps", "2")) for name in names)
  estimate = checkpoint.SPACE_MARGIN + sum(  # what the space check asks for (arrays + margin)
      leaf.nbytes for leaf in jax.tree.leaves(prepare.restore_run_state(reference)[0]))
  pages = lambda n: f"{(int(n) + 128 * 1024) // 4096 * 4096}"  # + config, metrics, events
  sizes = [pages(estimate + save_bytes / 2), pages(save_bytes * 1.6)]
  flags = ["--config", "configs/libero_rrd.py", *TINY_FLAGS, f"--config.data.dataset_dir="
           f"{tiny_dataset_dir}", "--config.train.num_steps=6", "--config.eval.every_steps=3",
           "--config.checkpoint.every_steps=2"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)

  def train_cli(workdir, *prefix):
    command = [sys.executable, *(prefix or ["-m", "rrd_jax.cli.train"]), "--workdir", workdir, *flags]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    return result, time.perf_counter() - started

  mounts = [str(tmp_path / "checked"), str(tmp_path / "in_flight")]
  try:
    for mount, size, prefix in zip(mounts, sizes, ([], ["-c", NO_SPACE_CHECK])):
      _mount_tmpfs(mount, size)
      workdir = os.path.join(mount, "w")
      result, seconds = train_cli(workdir, *prefix)
      expected = [f"no space left on the disk for {workdir}/checkpoints/",
                  "rerun the same command (it resumes from step 2)"]
      assert_one_sentence_error(result, expected + (["MiB are free"] if not prefix else []),
                                result.stderr[-3000:])
      assert seconds < 120, seconds
      assert checkpoint.available_steps(os.path.join(workdir, "checkpoints")) == [2]
      subprocess.run(["mount", "-o", "remount,size=20m", mount], check=True)
      result, _ = train_cli(workdir)
      assert result.returncode == 0, result.stderr[-3000:]
      assert "from step 2" in result.stdout
      assert checkpoint.available_steps(os.path.join(workdir, "checkpoints"))[-1] == 6
      assert not glob.glob(os.path.join(workdir, "checkpoints", "*", "*tmp*"))  # cleaned up
  finally:
    for mount in mounts:
      subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
