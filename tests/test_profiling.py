"""The profiler switch writes a trace TensorBoard can read; step timings are logged."""

import glob
import json
import os

import pytest

from rrd_jax.cli import train
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)


def test_profile_flag_writes_a_trace_and_timings_are_logged(tiny_dataset_dir, tmp_path):
  workdir = str(tmp_path / "w")
  config = tiny_config(tiny_dataset_dir, **{"profile.start_step": 2, "profile.num_steps": 2})
  train.train_and_evaluate(config, workdir, log=lambda *_: None)
  traces = glob.glob(os.path.join(workdir, "tensorboard", "plugins", "profile", "*", "*.xplane.pb"))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if "train/loss" in line]
  assert [row["step"] for row in rows] == [2, 4, 6]
  for row in rows:
    wait, compute = row["train/data_wait_s_per_step"], row["train/compute_s_per_step"]
    rate, fraction = row["train/steps_per_s"], row["train/data_wait_fraction"]
    # Both are timed (the streaming path waits on tf.data every step), so strictly positive.
    assert wait > 0 and compute > 0 and rate > 0, row
    # They partition the wall time between two logs: wait + compute = elapsed / steps, and the
    # fraction is the wait's share of it (reward_loop._Interval.scalars).
    assert wait + compute == pytest.approx(1 / rate, rel=1e-9), row
    assert fraction == pytest.approx(wait * rate, rel=1e-9), row
    assert 0 < fraction < 1, row


def test_no_trace_by_default(tiny_dataset_dir, tmp_path):
  workdir = str(tmp_path / "w")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir), workdir, log=lambda *_: None)
  assert not os.path.exists(os.path.join(workdir, "tensorboard", "plugins", "profile"))
