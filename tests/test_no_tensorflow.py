"""The online RL path imports and runs without tensorflow, tensorflow_datasets and clu (a GPU image
may lack them): metrics.jsonl only, with one warning that TensorBoard events are skipped."""

import json
import os
import subprocess
import sys

import pytest

# Hides tensorflow, tensorflow_datasets and clu (and their submodules) as if not installed (import
# raises ModuleNotFoundError, importlib.util.find_spec returns None, as etils probes), then runs
# `python -m rrd_jax.cli.train ARGS...`.
RUN_WITHOUT_TENSORFLOW = """
import importlib.abc, importlib.machinery, runpy, sys

class NotInstalled(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets", "clu"):
      return None
    return importlib.machinery.PathFinder.find_spec(name, path, target)

sys.meta_path[:] = [NotInstalled() if f is importlib.machinery.PathFinder else f
                    for f in sys.meta_path]
sys.argv = ["rrd_jax.cli.train", *sys.argv[1:]]
try:
  runpy.run_module("rrd_jax.cli.train", run_name="__main__", alter_sys=True)
finally:
  print("tensorflow imported:", "tensorflow" in sys.modules)
"""

TINY_PENDULUM = [
    "--config=configs/mujoco_rrd_sac.py:pendulum", "--config.train.total_env_steps=600",
    "--config.train.warmup_steps=200", "--config.eval.every_steps=300", "--config.eval.episodes=1",
    "--config.train.log_every_steps=200", "--config.checkpoint.every_steps=0",
    "--config.sac.batch_size=32",
]


def _python(repo_root, args, timeout):
  env = dict(os.environ, PYTHONPATH=repo_root)
  return subprocess.run([sys.executable, *args], cwd=repo_root, env=env, capture_output=True,
                        text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_online_run_without_tensorflow(repo_root, tmp_path):
  workdir = str(tmp_path / "run")
  result = _python(repo_root, ["-c", RUN_WITHOUT_TENSORFLOW, *TINY_PENDULUM,
                               f"--workdir={workdir}"], timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "tensorflow imported: False" in result.stdout
  warnings = [line for line in result.stderr.splitlines()
              if "TensorBoard events are skipped" in line]
  assert len(warnings) == 1, result.stderr[-3000:]
  assert "tensorflow is not installed" in warnings[0]
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows if "eval/return" in r] == [300, 600]
  assert not os.path.exists(os.path.join(workdir, "tensorboard"))


def test_online_modules_do_not_import_tensorflow(repo_root):
  script = ("import sys; import rrd_jax.cli.train, rrd_jax.rl.agent_loop; "
            "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'clu') "
            "if m in sys.modules))")
  result = _python(repo_root, ["-c", script], timeout=60)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == "[]"
