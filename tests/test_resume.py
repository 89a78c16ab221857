"""Checkpoint lifecycle: kill -9 or SIGTERM at any moment then rerun the same command -> bitwise the
same final parameters as an uninterrupted run; keep-N and best retained; overwrite moves runs
aside."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rrd_jax.cli import train
from rrd_jax.config import loading
from rrd_jax.run import checkpoint
from rrd_jax.train import prepare
from rrd_jax.util.errors import Interrupted
from tests.helpers import ROOT, tiny_config

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)

NUM_STEPS = 40
OVERRIDES = {"train.num_steps": NUM_STEPS, "train.log_every_steps": 1, "eval.every_steps": 8,
             "checkpoint.every_steps": 1, "checkpoint.keep": 2}


def cli_flags(dataset_dir):
  config = tiny_config(dataset_dir, **OVERRIDES)
  flat = {"data.dataset_dir": dataset_dir, "data.image_size": 40, "data.eval_fraction": 0.25,
          "rrd.sample_size": 4, "rrd.episodes_per_batch": 4, "model.hidden_sizes": "(32,32)",
          "eval.batches": 1, "eval.episodes": 4, "train.predict_batch_size": 16,
          **OVERRIDES}
  # The CLI run must resolve to exactly the in-process reference config.
  assert loading.load_config(overrides={k: (config.model.hidden_sizes if k == "model.hidden_sizes"
                                                 else v) for k, v in flat.items()}) == config
  return [f"--config.{k}={v}" for k, v in flat.items()]


def metric_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


TIMINGS = ("train/steps_per_s", "train/data_wait_s_per_step", "train/compute_s_per_step",
           "train/data_wait_fraction")


def without_timing(rows):
  return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


@pytest.fixture(scope="module")
def reference(tiny_dataset_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference") / "w")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **OVERRIDES), workdir, log=lambda *_: None)
  return workdir


def start(workdir, flags):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.Popen([sys.executable, "-m", "rrd_jax.cli.train", "--workdir", workdir, *flags],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def last_step(workdir):
  try:
    rows = metric_rows(workdir)
  except (FileNotFoundError, json.JSONDecodeError):
    return 0
  return max((r["step"] for r in rows), default=0)


def test_kill_9_or_sigterm_then_resume_gives_identical_params(reference, tiny_dataset_dir,
                                                               tmp_path):
  """kill -9 twice and SIGTERM once (a preemption: the run saves where it stands, prints one line,
  exits 143), each followed by a rerun: the final state and metrics log are the uninterrupted
  run's, bitwise."""
  workdir = str(tmp_path / "w")
  flags = cli_flags(tiny_dataset_dir)
  for stop_at, how in ((3, signal.SIGKILL), (14, signal.SIGTERM), (27, signal.SIGKILL)):
    process = start(workdir, flags)
    deadline = time.time() + 300
    while last_step(workdir) < stop_at and process.poll() is None and time.time() < deadline:
      time.sleep(0.01)
    process.send_signal(how)
    output = process.communicate()[0]
    if how == signal.SIGKILL:
      assert process.returncode == -signal.SIGKILL, output  # it really was killed mid-run
      continue
    assert process.returncode == 143 and "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("stopped by SIGTERM")]
    assert len(lines) == 1 and "rerun the same command" in lines[0], output
    stopped_at = int(lines[0].split("at step ")[1].split()[0])
    assert stop_at <= stopped_at < NUM_STEPS
    assert stopped_at in checkpoint.available_steps(os.path.join(workdir, "checkpoints"), "latest")
  # A save torn by a crash (what kill -9 during an async save leaves) must be ignored.
  steps_dir = os.path.join(workdir, "checkpoints", "steps")
  latest = max(int(n) for n in os.listdir(steps_dir) if n.isdigit())
  torn = os.path.join(steps_dir, f"{latest + 1}.orbax-checkpoint-tmp-1234567890")
  shutil.copytree(os.path.join(steps_dir, str(latest)), torn)
  for root, _, names in os.walk(torn):
    for name in names[: max(1, len(names) // 2)]:
      os.remove(os.path.join(root, name))
  process = start(workdir, flags)
  output = process.communicate(timeout=600)[0]
  assert process.returncode == 0, output
  assert "Resuming the run" in output
  assert not os.path.exists(torn)

  final, _ = prepare.restore_run_state(workdir)
  expected, _ = prepare.restore_run_state(reference)
  assert int(final.step) == int(expected.step) == NUM_STEPS
  jax.tree.map(np.testing.assert_array_equal, final.params, expected.params)
  jax.tree.map(np.testing.assert_array_equal, final.opt_state, expected.opt_state)
  # The metrics log reads as one uninterrupted run.
  assert without_timing(metric_rows(workdir)) == without_timing(metric_rows(reference))


def test_sigterm_saves_at_the_step_reached_without_a_periodic_save(reference, tiny_dataset_dir,
                                                                   tmp_path):
  """With no periodic save due, SIGTERM still leaves a checkpoint at the step the run reached
  (rrd_jax.run.interrupt); resuming from it ends on the uninterrupted run's parameters."""
  workdir = str(tmp_path / "w")
  config = tiny_config(tiny_dataset_dir, **dict(OVERRIDES, **{"checkpoint.every_steps": 1000}))

  def log(line):  # the run logs every step: preempt it at step 5
    if line.startswith("step 5/"):
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(Interrupted, match="saved the run at step 5 ") as stopped:
    train.train_and_evaluate(config, workdir, log=log)
  assert stopped.value.exit_code == 143
  assert checkpoint.available_steps(os.path.join(workdir, "checkpoints"), "latest") == [5]
  train.train_and_evaluate(config, workdir, log=lambda *_: None)
  final, _ = prepare.restore_run_state(workdir)
  expected, _ = prepare.restore_run_state(reference)
  jax.tree.map(np.testing.assert_array_equal, final.params, expected.params)


def test_keep_last_n_and_best(reference):
  steps = checkpoint.available_steps(os.path.join(reference, "checkpoints"), "latest")
  assert steps == [NUM_STEPS - 1, NUM_STEPS]  # keep=2 newest of the every-step saves
  evals = {r["step"]: r["eval/loss"] for r in metric_rows(reference) if "eval/loss" in r}
  assert sorted(evals) == [8, 16, 24, 32, 40]
  best_step = min(evals, key=evals.get)
  assert checkpoint.available_steps(os.path.join(reference, "checkpoints"), "best") == [best_step]
  state, meta = prepare.restore_run_state(reference, "best")
  assert int(state.step) == best_step
  assert meta["sampler"]["next_step"] == best_step
  assert meta["config"]["train"]["num_steps"] == NUM_STEPS
  # The best checkpoint is a different model from the latest one unless the last eval was best.
  latest, _ = prepare.restore_run_state(reference, "latest")
  same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params),
                                                   jax.tree.leaves(latest.params)))
  assert same == (best_step == NUM_STEPS)


def test_rerunning_a_finished_run_changes_nothing(reference, tiny_dataset_dir):
  before = metric_rows(reference)
  results = train.train_and_evaluate(tiny_config(tiny_dataset_dir, **OVERRIDES), reference,
                                     log=lambda *_: None)
  assert metric_rows(reference) == before
  assert results["eval/loss"] == before[-1]["eval/loss"]


def test_overwrite_moves_the_old_run_aside(tiny_dataset_dir, tmp_path):
  workdir = str(tmp_path / "w")
  small = {"train.num_steps": 2, "eval.every_steps": 2}
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **small), workdir, log=lambda *_: None)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    old_metrics = f.read()
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, seed=3, **small,
                                       **{"checkpoint.overwrite": True}),
                           workdir, log=lambda *_: None)
  archived = os.listdir(os.path.join(workdir, "archived"))
  assert len(archived) == 1
  with open(os.path.join(workdir, "archived", archived[0], "metrics.jsonl"), encoding="utf-8") as f:
    assert f.read() == old_metrics
  config, _ = loading.read_run_config(workdir)
  assert config.seed == 3
