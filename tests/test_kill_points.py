"""Crash consistency: the trainer is killed (SIGKILL, injected by strace on the rename that would
commit a file) at each kind of save in turn: config.json, a periodic checkpoint, a best checkpoint
(at its commit and in the middle), the final checkpoint and final_metrics.json. The same command
is rerun after each kill and must end bitwise where an uninterrupted run ends. The agent is killed
in the middle of its checkpoint save and resumes."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from rrd_jax.run import checkpoint
from rrd_jax.train import prepare
from tests.helpers import ROOT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("strace") is None,
                                 reason="needs strace (.ci/run installs it)")]

FLAGS = ["--config", "libero_rrd", "--config.data.image_size=40", "--config.rrd.sample_size=4",
         "--config.rrd.episodes_per_batch=4", "--config.model.hidden_sizes=(32,32)",
         "--config.data.eval_fraction=0.25", "--config.train.num_steps=6",
         "--config.train.log_every_steps=2", "--config.eval.every_steps=3",
         "--config.eval.batches=1", "--config.eval.episodes=4",
         "--config.train.predict_batch_size=16", "--config.checkpoint.every_steps=2"]
# The kill lands on the rename that would commit this temporary file or directory (relative to
# the workdir): the writes of config.json and final_metrics.json, the commit of a periodic, a best
# and the final checkpoint, and the middle of a best checkpoint's save.
KILL_POINTS = ("config.json.tmp", "checkpoints/steps/2.orbax-checkpoint-tmp",
               "checkpoints/best/3.orbax-checkpoint-tmp",
               "checkpoints/best/6.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp",
               "checkpoints/steps/6.orbax-checkpoint-tmp", "final_metrics.json.tmp")


def killed_at_rename(path, command):
  """`command` under strace, SIGKILLed on entering the first rename of `path` (before it
  happens). Not --seccomp-bpf, which would stop the process only at the traced renames: strace
  6.1 then skips the signal injection (error injection still works)."""
  return ["strace", "-f", "-qq", "-o", os.devnull, "-P", path,
          "-e", "trace=rename,renameat,renameat2",
          "-e", "inject=rename,renameat,renameat2:signal=KILL:when=1", *command]


def _train(workdir, dataset_dir, kill_at=None, flags=FLAGS):
  command = [sys.executable, "-m", "rrd_jax.cli.train", "--workdir", workdir, *flags,
             f"--config.data.dataset_dir={dataset_dir}"]
  if kill_at:
    command = killed_at_rename(os.path.join(workdir, kill_at), command)
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        check=False)


def _final(workdir):
  state, meta = prepare.restore_run_state(workdir)
  with open(os.path.join(workdir, "final_metrics.json"), encoding="utf-8") as f:
    return state.params, meta["sampler"]["next_step"], json.load(f)


@pytest.fixture(scope="module")
def reference(tiny_dataset_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted") / "w")
  done = _train(workdir, tiny_dataset_dir)
  assert done.returncode == 0, done.stderr[-3000:]
  return _final(workdir)


def test_killed_at_every_kind_of_save_then_rerun_ends_bitwise_like_an_uninterrupted_run(
    reference, tiny_dataset_dir, tmp_path):
  """One workdir, killed at each point in turn: every rerun resumes from what the previous kill
  left (and is itself killed at the next point), the last one finishes."""
  workdir = str(tmp_path / "w")
  for kill_at in KILL_POINTS:
    killed = _train(workdir, tiny_dataset_dir, kill_at=kill_at)
    assert killed.returncode != 0, f"the run was not killed at {kill_at}: {killed.stdout[-2000:]}"
    assert os.path.exists(os.path.join(workdir, kill_at)), f"{kill_at} was committed"
    assert "Traceback" not in killed.stderr, killed.stderr[-3000:]
  rerun = _train(workdir, tiny_dataset_dir)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "Traceback" not in rerun.stderr
  params, next_step, final_metrics = _final(workdir)
  expected_params, expected_step, expected_metrics = reference
  jax.tree.map(np.testing.assert_array_equal, params, expected_params)
  assert next_step == expected_step == 6
  assert final_metrics == expected_metrics


def test_the_agent_killed_in_its_checkpoint_save_resumes(tmp_path):
  workdir = str(tmp_path / "agent")
  flags = ["--config", "mujoco_rrd_sac:pendulum", "--config.train.total_env_steps=1200",
           "--config.train.warmup_steps=400", "--config.eval.every_steps=600",
           "--config.eval.episodes=1", "--config.checkpoint.every_steps=400",
           "--config.sac.batch_size=32"]
  base = [sys.executable, "-m", "rrd_jax.cli.train", "--workdir", workdir, *flags]
  target = os.path.join(workdir, "checkpoints", "steps", "800.orbax-checkpoint-tmp")
  killed = subprocess.run(killed_at_rename(target, base), cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
  assert killed.returncode != 0
  assert checkpoint.available_steps(os.path.join(workdir, "checkpoints")) == [400]
  rerun = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=False)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "from env step 400" in rerun.stdout
  assert checkpoint.available_steps(os.path.join(workdir, "checkpoints")) == [1200]
  with open(os.path.join(workdir, "final_metrics.json"), encoding="utf-8") as f:
    assert json.load(f)["env_steps"] == 1200
