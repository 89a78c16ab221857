"""Train: rrd-train --config CONFIG[:VARIANT] --workdir DIR [--config.FIELD=VALUE ...]
(or python -m rrd_jax.cli.train ...).

The config's `kind` picks the loop: "reward_model" (configs/libero_rrd.py, the default; the loop
is rrd_jax/train/loop.py) or "agent" (configs/mujoco_rrd_sac.py, the online RRD-SAC agent;
rrd_jax/rl/agent_loop.py). CONFIG is a config file's path, or the name of a shipped config
(libero_rrd, mujoco_rrd_sac) from any directory. Override any config field with
--config.FIELD=VALUE (the config file lists the fields). Writes WORKDIR/config.json (the resolved
config), metrics.jsonl, tensorboard/ and checkpoints/; rerunning the same command resumes.
"""

import importlib
import sys

from absl import flags
from ml_collections import config_flags

from rrd_jax.config import loading, schema
from rrd_jax.run import compile_cache, parallel
from rrd_jax.util.errors import exit_with_error, run_app, unknown_config_field_message, UserError

# config.kind -> the module whose train_and_evaluate(config, workdir) runs it. The agent's loop
# is imported only for agent configs, so its path never loads TensorFlow.
LOOPS = {"reward_model": "rrd_jax.train.loop", "agent": "rrd_jax.rl.agent_loop"}


def train_and_evaluate(config, workdir, log=print):
  """Runs the loop of config.kind; returns its final metrics."""
  loop = importlib.import_module(LOOPS[schema.run_kind(config)])
  return loop.train_and_evaluate(config, workdir, log=log)


def main():
  sys.argv = loading.resolve_config_argv(sys.argv)
  try:  # ml_collections applies --config.FIELD overrides from sys.argv while defining the flag
    config = config_flags.DEFINE_config_file(
        "config", loading.DEFAULT_CONFIG_FILE,
        "Config file, optionally with :VARIANT: a path, or a shipped config's name (libero_rrd, "
        "mujoco_rrd_sac). Default: libero_rrd (the reward model on the embedded dataset).")
  except (AttributeError, KeyError) as e:
    exit_with_error(unknown_config_field_message(e, sys.argv))
  workdir = flags.DEFINE_string("workdir", None, "Directory for config.json, metrics, checkpoints "
                                "(required; rerun with the same one to resume).")
  coordinator = flags.DEFINE_string(
      "coordinator_address", "", "Multi-process jobs: host:port of process 0 (auto-detected on "
      "SLURM and TPU VMs when omitted).")
  num_processes = flags.DEFINE_integer("num_processes", 1, "Multi-process jobs: process count.")
  process_id = flags.DEFINE_integer("process_id", 0, "Multi-process jobs: this process's index.")

  def run(argv):
    del argv
    if not workdir.value:
      raise UserError("--workdir is required")
    try:
      resolved = config.value
      resolved.get("rrd")  # a config file that failed to load raises here
    except OSError:
      raise UserError(f"config file {flags.FLAGS['config'].serialize().split('=', 1)[-1]} "
                      "cannot be loaded (missing or unreadable)") from None
    schema.validate(resolved)  # before the loop's imports (TensorFlow) and the devices
    compile_cache.enable(resolved.compile_cache_dir)
    if schema.run_kind(resolved) == "reward_model":  # multi-process jobs
      parallel.initialize_distributed(coordinator.value, num_processes.value, process_id.value)
    train_and_evaluate(resolved, workdir.value)

  run_app(run)


if __name__ == "__main__":
  main()
