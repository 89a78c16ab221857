"""Crash safety of a run's directory: one writer per workdir, torn small files, a corrupt newest
checkpoint, a best checkpoint ahead of the periodic ones, and workdirs that are self-contained
(copied, moved, overwritten without touching anything outside them)."""

import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest

from rrd_jax import checkpoint, config_utils, files, lifecycle, reward_setup, train
from rrd_jax.errors import UserError
from tests.helpers import tiny_config

STEPS = {"train.num_steps": 6, "train.log_every_steps": 2, "eval.every_steps": 3,
         "checkpoint.every_steps": 2, "checkpoint.keep": 3}
quiet = lambda *_: None  # noqa: E731


def _params(workdir):
  return reward_setup.restore_run_state(workdir)[0].params


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
      config_utils.read_run_config(workdir)
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
  _, facts = config_utils.read_run_config(workdir)
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
