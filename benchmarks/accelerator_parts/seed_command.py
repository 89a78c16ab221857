"""Part d of benchmarks/accelerator.py: the seed command end to end on part b's dataset. Streaming:
`python -m rrd_jax.cli.pytorch_flags` with shared/docs/RRD_REFERENCE.md's flags; the legacy CLI has
no cache flag, so the device-cached run is its equivalent `python -m rrd_jax.cli.train` command
(pytorch_flags.translate's overrides) plus --config.data.cache=device. Wall seconds, exit status
and the run's own logged figures."""

import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common
from benchmarks.accelerator_parts import guards

# shared/docs/RRD_REFERENCE.md's seed command; the dataset, image size, epochs, cycles and
# checkpoint directory come from seed_args.
SEED_FLAGS = ("--env", "libero-10", "--env_type", "normal", "--alg", "rrd", "--basis_alg", "sac",
              "--rrd_reward_only", "True", "--tag", "pretrain_RRD_Libero10", "--cuda",
              "--iterations", "100", "--train_batches", "50", "--batch_size", "32",
              "--rrd_batch_size", "32", "--rrd_sample_size", "32", "--save_freq", "2",
              "--save_final", "True")
SEED_TAG = "pretrain_RRD_Libero10"


def seed_args(version_dir, plan, checkpoint_dir):
  return [*SEED_FLAGS, "--libero_dataset_path", version_dir,
          "--libero_image_size", str(plan.seed_image_size), "--epochs", str(plan.seed_epochs),
          "--cycles", str(plan.seed_cycles), "--checkpoint_dir", checkpoint_dir]


def seed_commands(version_dir, plan, tmp):
  """{run: (python args, cwd, workdir)}: `rrd_jax.cli.pytorch_flags` with the seed flags
  (streaming), and its equivalent `rrd_jax.cli.train` command (pytorch_flags.translate's
  overrides) with data.cache=device."""
  from rrd_jax.cli import pytorch_flags  # pylint: disable=import-outside-toplevel
  runs = {}
  for run_name in ("streaming", "device_cached"):
    cwd = os.path.join(tmp, run_name)
    args = seed_args(version_dir, plan, os.path.join(cwd, "checkpoints"))
    workdir, overrides = pytorch_flags.translate(pytorch_flags.make_parser().parse_args(args))
    if run_name == "streaming":
      runs[run_name] = (["-m", "rrd_jax.cli.pytorch_flags", *args], cwd, os.path.join(cwd, workdir))
    else:
      runs[run_name] = (["-m", "rrd_jax.cli.train", "--config",
                         os.path.join(common.ROOT, "configs", "libero_rrd.py"), "--workdir",
                         os.path.join(cwd, workdir),
                         *[f"--config.{k}={v}" for k, v in overrides.items()],
                         "--config.data.cache=device"], cwd, os.path.join(cwd, workdir))
  return runs


def run_metrics(workdir):
  """Figures a finished run left in its workdir: training steps/s and data wait (medians over
  the logged intervals after the first, which holds the compilation), data_stats.json."""
  out = {}
  if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    rows = common.read_metrics(workdir)
    if any("train/steps_per_s" in r for r in rows):
      for key in ("steps_per_s", "data_wait_fraction"):
        out[f"train_{key}"] = common.median_or_none(
            common.values_after_first(rows, f"train/{key}"))
    out["last_step"] = max((r.get("step", 0) for r in rows), default=None)
  stats = os.path.join(workdir, "data_stats.json")
  if os.path.exists(stats):
    with open(stats, encoding="utf-8") as f:
      out["data_stats"] = json.load(f)
  return out


def _tail(stream):
  if isinstance(stream, bytes):
    stream = stream.decode("utf-8", "replace")
  return (stream or "")[-1500:]


def run_cli(args, cwd, workdir, timeout):
  """Runs `python ARGS` in cwd: wall seconds, exit status and the run's own figures."""
  os.makedirs(cwd, exist_ok=True)
  out = {"command": " ".join(["python", *args]), "timeout_s": timeout}
  start = time.perf_counter()
  try:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=common.child_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
  except subprocess.TimeoutExpired as e:
    out.update(wall_s=time.perf_counter() - start,
               error=f"stopped after {timeout:.0f} s (the time budget)",
               stderr_tail=_tail(e.stderr))
    return out
  out.update(wall_s=time.perf_counter() - start, returncode=proc.returncode)
  if proc.returncode:
    out.update(error=f"exit status {proc.returncode}", stderr_tail=_tail(proc.stderr))
  out.update(run_metrics(workdir))
  return out


def part_seed_command(plan, out, save, context, budget):
  """(d) the seed command (500 updates) end to end on part b's dataset, streaming and cached."""
  if "cache_dataset" not in context:
    raise RuntimeError("part b's dataset is missing (its generation failed or was skipped)")
  out.update(dataset=context["cache_dataset"], updates=plan.seed_epochs * plan.seed_cycles,
             image_size=plan.seed_image_size,
             note="the legacy CLI has no cache flag: device_cached runs its equivalent "
                  "rrd_jax.cli.train command with --config.data.cache=device")
  with tempfile.TemporaryDirectory() as tmp:
    for name, (args, cwd, workdir) in seed_commands(context["cache_dataset"], plan, tmp).items():
      timeout = budget.remaining()
      if timeout < plan.part_min_s["seed_run"]:
        out[name] = guards.skipped_for_budget(budget)
        continue
      guards.log(f"(d) seed command, {name} ({timeout:.0f} s left)")
      out[name] = run_cli(args, cwd, workdir, timeout)
      save()
