"""Training throughput of one job laid out three ways, side by side in one run: 1 device, 8 fake
CPU devices in one process (XLA_FLAGS=--xla_force_host_platform_device_count=8), and 2 processes
(launch/local.sh 2). Same config, same global batch; steps/s from metrics.jsonl, first log
interval (compilation) excluded.

python -m benchmarks.scaling [--steps 60 | --smoke] [--out RESULT.json]
    [-- extra --config.* overrides]

On a CPU-only machine the fake devices and processes share the same cores, so this measures the
overhead of sharding and cross-process collectives, not a speed-up. --smoke: 4 steps of 8 x 4
batches at 36x36 on 16 embedded episodes (checks that the three layouts run).
"""

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile

from benchmarks import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SMOKE_FLAGS = ("--config.rrd.episodes_per_batch=8", "--config.rrd.sample_size=4",
               "--config.data.image_size=36", "--config.data.embedded_image_size=36",
               "--config.data.embedded_episodes=16", "--config.data.embedded_min_length=8",
               "--config.data.embedded_max_length=12",
               f"--config.data.embedded_dir={common.BENCH_DIR}")


def steps_per_s(workdir):
  """Mean of the logged steps/s, the interval that includes compilation left out."""
  rates = common.values_after_first(common.read_metrics(workdir), "train/steps_per_s")
  return sum(rates) / len(rates)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--smoke", action="store_true", help="tiny runs (checks that they run)")
  parser.add_argument("--out", default="")
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  log_every = 10
  if args.smoke:
    args.steps, log_every, extra = 4, 2, [*SMOKE_FLAGS, *extra]
  flags = [f"--config.train.num_steps={args.steps}", f"--config.train.log_every_steps={log_every}",
           f"--config.eval.every_steps={args.steps}", "--config.eval.episodes=0",
           "--config.checkpoint.every_steps=0", "--config.checkpoint.save_final=False", *extra]
  env = dict(os.environ, PYTHONPATH=ROOT)
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    layouts = {
        "1_device": ([sys.executable, "-m", "rrd_jax.cli.train"], {}),
        "8_fake_devices": ([sys.executable, "-m", "rrd_jax.cli.train"],
                           {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}),
        "2_processes": (["bash", os.path.join(ROOT, "launch", "local.sh"), "2", "--"],
                        {"PYTHON": sys.executable}),
    }
    for name, (command, extra_env) in layouts.items():
      workdir = os.path.join(tmp, name)
      with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
      subprocess.run([*command, "--workdir", workdir, *flags], cwd=ROOT, check=True,
                     env={**env, **extra_env, "RRD_JAX_PORT": str(port)},
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
      results[name] = {"steps_per_s": steps_per_s(workdir)}
  base = results["1_device"]["steps_per_s"]
  for value in results.values():
    value["relative_to_1_device"] = value["steps_per_s"] / base
  report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": args.steps,
            "overrides": flags, "results": results}
  common.emit(report, args.out)


if __name__ == "__main__":
  main()
