"""The profiler switch writes a trace TensorBoard can read; step timings are logged."""

import glob
import json
import os

from conftest import tiny_config
from rrd_jax import train


def test_profile_flag_writes_a_trace_and_timings_are_logged(tiny_dataset_dir, tmp_path):
  workdir = str(tmp_path / "w")
  config = tiny_config(tiny_dataset_dir, **{"profile.start_step": 2, "profile.num_steps": 2})
  train.train_and_evaluate(config, workdir, log=lambda *_: None)
  traces = glob.glob(os.path.join(workdir, "tensorboard", "plugins", "profile", "*", "*.xplane.pb"))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if "train/loss" in line]
  for row in rows:
    assert row["train/data_wait_s_per_step"] >= 0 and row["train/compute_s_per_step"] >= 0
    assert 0 <= row["train/data_wait_fraction"] <= 1


def test_no_trace_by_default(tiny_dataset_dir, tmp_path):
  workdir = str(tmp_path / "w")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir), workdir, log=lambda *_: None)
  assert not os.path.exists(os.path.join(workdir, "tensorboard", "plugins", "profile"))
