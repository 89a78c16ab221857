"""Two real local processes (jax.distributed over 127.0.0.1, launched by launch/local.sh) train the
same run as one process: same loss curve, metrics from process 0 only, and the checkpoint they
wrote collectively restores in a single process."""

import json
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from rrd_jax.cli import train
from rrd_jax.train import prepare
from tests.helpers import ROOT, tiny_config

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)

OVERRIDES = {"train.num_steps": 6, "train.log_every_steps": 1, "eval.every_steps": 3,
             "checkpoint.every_steps": 2}
FLAGS = ["--config.data.image_size=40", "--config.rrd.sample_size=4",
         "--config.rrd.episodes_per_batch=4", "--config.model.hidden_sizes=(32,32)",
         "--config.train.num_steps=6", "--config.train.log_every_steps=1", "--config.eval.every_steps=3",
         "--config.eval.batches=1", "--config.eval.episodes=4",
         "--config.train.predict_batch_size=16", "--config.data.eval_fraction=0.25",
         "--config.checkpoint.every_steps=2"]


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_two_processes_match_one(tiny_dataset_dir, tmp_path):
  one = str(tmp_path / "one")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **OVERRIDES), one, log=lambda *_: None)
  two = str(tmp_path / "two")
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable, RRD_JAX_PORT=str(free_port()))
  launcher = subprocess.Popen(
      ["bash", os.path.join(ROOT, "launch", "local.sh"), "2", "--", "--workdir", two,
       f"--config.data.dataset_dir={tiny_dataset_dir}", *FLAGS],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      start_new_session=True)
  try:
    output = launcher.communicate(timeout=300)[0]
  except subprocess.TimeoutExpired:
    os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and both training processes
    raise AssertionError("the 2-process run did not finish in 300 s (a hang)") from None
  assert launcher.returncode == 0, output[-4000:]
  with open(os.path.join(two, "config.json"), encoding="utf-8") as f:
    assert json.load(f)["processes"] == 2
  rows_one, rows_two = rows(one), rows(two)
  # Process 0 alone writes metrics: one row per log step, not one per process.
  assert [r["step"] for r in rows_two] == [r["step"] for r in rows_one]
  losses = lambda rs, key: np.asarray([r[key] for r in rs if key in r])
  np.testing.assert_allclose(losses(rows_two, "train/loss"), losses(rows_one, "train/loss"),
                             rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(losses(rows_two, "eval/loss"), losses(rows_one, "eval/loss"),
                             rtol=1e-4, atol=1e-7)
  # The checkpoint written by two processes restores in this single process.
  restored_two, restored_one = prepare.restore_run_state(two)[0], prepare.restore_run_state(one)[0]
  assert int(restored_two.step) == 6
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               restored_two.params, restored_one.params)
