"""The sharded train step on 8 (fake CPU) devices gives the 1-device loss curve.

The batch is split over a 1-D `data` mesh and the state is replicated; the global batch is sampled
identically whatever the device count, so only float reassociation may differ.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)

SCRIPT = textwrap.dedent("""
    import json
    import jax
    from tests.helpers import tiny_config
    from rrd_jax.cli import train
    config = tiny_config({dataset!r}, **{{"rrd.episodes_per_batch": 8, "train.num_steps": 6,
                                         "train.log_every_steps": 1, "train.predict_batch_size": 16,
                                         "mesh.data": {mesh_data}}})
    results = train.train_and_evaluate(config, {workdir!r}, log=lambda *_: None)
    with open({workdir!r} + "/config.json") as f:
      mesh_devices = len(json.load(f)["devices"])
    print(json.dumps({{"devices": jax.device_count(), "mesh_devices": mesh_devices,
                      "results": results}}))
""")


def run_training(dataset_dir, workdir, devices, mesh_data=-1):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  script = SCRIPT.format(dataset=dataset_dir, workdir=workdir,
                         mesh_data=mesh_data)
  done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout.strip().splitlines()[-1])
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    losses = [json.loads(line)["train/loss"] for line in f if "train/loss" in line]
  return report, np.asarray(losses)


def test_eight_devices_match_one_device(tiny_dataset_dir, tmp_path):
  one, losses_one = run_training(tiny_dataset_dir, str(tmp_path / "one"), 1)
  eight, losses_eight = run_training(tiny_dataset_dir, str(tmp_path / "eight"), 8)
  assert one["devices"] == 1 and eight["devices"] == 8
  assert len(losses_one) == len(losses_eight) == 6
  # Tolerance: float reassociation of the cross-device reductions over 6 Adam steps.
  np.testing.assert_allclose(losses_eight, losses_one, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(eight["results"]["eval/loss"], one["results"]["eval/loss"],
                             rtol=1e-4, atol=1e-7)
  assert eight["mesh_devices"] == 8
  # config.mesh.data picks the data-axis size: 4 of the 8 devices, same curve.
  four, losses_four = run_training(tiny_dataset_dir, str(tmp_path / "four"), 8, mesh_data=4)
  assert four["mesh_devices"] == 4
  np.testing.assert_allclose(losses_four, losses_one, rtol=1e-4, atol=1e-7)
