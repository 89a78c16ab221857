"""config.compile_cache_dir: rrd-train keeps its compiled programs on disk (JAX's persistent
compilation cache), and a run resumed with the cache moved or turned off is the same run."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.test_cli_errors import TINY_FLAGS

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)


def _train(workdir, dataset_dir, *flags):
  return subprocess.run(
      [sys.executable, "-m", "rrd_jax.cli.train", "--workdir", workdir,
       f"--config.data.dataset_dir={dataset_dir}", *TINY_FLAGS, *flags],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
      timeout=300, check=False)


def test_training_fills_the_cache_and_resumes_with_it_moved_or_off(tiny_dataset_dir, tmp_path):
  cache_dir, workdir = tmp_path / "compilation", str(tmp_path / "run")
  done = _train(workdir, tiny_dataset_dir, f"--config.compile_cache_dir={cache_dir}")
  assert done.returncode == 0, done.stderr[-3000:]
  assert len(os.listdir(cache_dir)) >= 2  # at least init and the train step
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    assert json.load(f)["config"]["compile_cache_dir"] == str(cache_dir)
  # Rerunning with more steps and the cache off resumes the run (the field is not part of what a
  # run computes) and creates no cache directory.
  done = _train(workdir, tiny_dataset_dir, "--config.train.num_steps=3",
                "--config.compile_cache_dir=")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "Resuming" in done.stdout
  assert sorted(os.listdir(tmp_path)) == ["compilation", "run"]
