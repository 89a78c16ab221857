"""The PyTorch tool's command line, translated: python -m rrd_jax.cli.pytorch_flags --env libero-10 ... .

Accepts the old flags, prints the equivalent `python -m rrd_jax.cli.train` command, and runs it.
Semantics kept from the old tool in reward-only mode (--rrd_reward_only True):
  - exactly epochs x cycles reward-model updates (--iterations, --train_batches and --batch_size
    only drive the policy learner there, so they have no effect);
  - each update on rrd_batch_size // rrd_sample_size episodes x rrd_sample_size steps, with the
    old tool's "return" loss form (T*m - R)^2 (bias correction, if on, scaled consistently);
  - --save_freq counts epochs; metrics go to log/<tag>/, checkpoints to <checkpoint_dir>/<tag>/.
The full agent (--env Hopper-v5 etc., --rrd_reward_only False or omitted) maps onto
configs/mujoco_rrd_sac.py (see translate_online): --alg rrd|ircr|sac -> reward.kind rrd (rrd_lrd
with --rrd_bias_correction True) | ircr | episodic (plain SAC on the delayed reward; with
--env_type normal the dense oracle); epochs x cycles x iterations x timesteps environment steps,
--train_batches gradient steps after every --timesteps environment steps, --test_rollouts
evaluation episodes every cycle.
"""

import argparse
import os
import shlex
import sys

import jax

from rrd_jax.cli import train
from rrd_jax.config import loading, schema
from rrd_jax.run import compile_cache
from rrd_jax.util.errors import cli_main, UserError

LIBERO_ENVS = ("libero-10", "libero-spatial", "libero-object", "libero-goal", "libero-90")
LIBERO_CONFIG = "configs/libero_rrd.py"
ONLINE_CONFIG = "configs/mujoco_rrd_sac.py"
ONLINE_ALGS = {"rrd": "rrd", "ircr": "ircr", "sac": "episodic"}  # --alg -> reward.kind
# Reference flags of the full agent: --flag -> config field (set only when given).
ONLINE_OPTIONAL = {"gamma": "sac.gamma", "polyak": "sac.polyak", "pi_lr": "sac.actor_lr",
                   "q_lr": "sac.critic_lr", "alpha_lr": "sac.alpha_lr",
                   "alpha_init": "sac.init_alpha", "r_lr": "optim.learning_rate"}


def _bool(text):
  lowered = str(text).lower()
  if lowered in ("true", "1", "yes", "y"):
    return True
  if lowered in ("false", "0", "no", "n"):
    return False
  raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    raise UserError(message)


def make_parser():
  p = _Parser(prog="python -m rrd_jax.cli.pytorch_flags", description=__doc__,
              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--env", default="libero-10", help="LIBERO suite: " + ", ".join(LIBERO_ENVS) +
                 "; or a task for the full agent: " + ", ".join(schema.ENV_NAMES))
  p.add_argument("--env_type", default=None,
                 help="LIBERO: accepted ('normal'); full agent: ep_rews (default, episodic "
                 "reward) or normal (dense reward, with --alg sac)")
  p.add_argument("--alg", default="rrd", help="LIBERO: only 'rrd'; full agent: rrd, ircr, sac")
  p.add_argument("--basis_alg", default="sac", help="policy learner: only sac")
  p.add_argument("--rrd_reward_only", type=_bool, default=None,
                 help="train only the reward model (LIBERO: default True; full agent: False)")
  p.add_argument("--tag", default="", help="run name: log/<tag>/, <checkpoint_dir>/<tag>/")
  p.add_argument("--libero_dataset_path", default="",
                 help="RLDS version dir, e.g. .../libero_10_no_noops/1.0.0 (default: embedded)")
  p.add_argument("--libero_image_size", type=int, default=84, help="frames resized to N x N")
  p.add_argument("--cuda", action="store_true", help="use the accelerator (CPU if there is none)")
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--cycles", type=int, default=100)
  p.add_argument("--iterations", type=int, default=100, help="no effect in reward-only mode")
  p.add_argument("--train_batches", type=int, default=100, help="no effect in reward-only mode")
  p.add_argument("--batch_size", type=int, default=256, help="no effect in reward-only mode")
  p.add_argument("--rrd_batch_size", type=int, default=256)
  p.add_argument("--rrd_sample_size", type=int, default=64)
  p.add_argument("--rrd_bias_correction", type=_bool, default=False)
  p.add_argument("--save_freq", type=int, default=0, help="checkpoint every N epochs (0: never)")
  p.add_argument("--checkpoint_dir", default="log/checkpoints")
  p.add_argument("--save_final", type=_bool, default=False)
  p.add_argument("--seed", type=int, default=0)
  # The full agent's schedule, buffer and SAC flags (the reference's names and defaults).
  p.add_argument("--timesteps", type=int, default=100, help="full agent: env steps per iteration")
  p.add_argument("--test_rollouts", type=int, default=10, help="full agent: eval episodes per cycle")
  p.add_argument("--buffer_size", type=int, default=1_000_000, help="full agent: replay capacity")
  p.add_argument("--warmup", type=int, default=10_000, help="full agent: random-action steps")
  for name in ONLINE_OPTIONAL:
    p.add_argument(f"--{name}", type=float, default=None, help=f"full agent: {ONLINE_OPTIONAL[name]}")
  return p


def translate(args):
  """Old flags -> (workdir, {config field: value}) for configs/libero_rrd.py."""
  if args.rrd_reward_only is None:
    args.rrd_reward_only = True
  if args.env not in LIBERO_ENVS:
    raise UserError(f"--env {args.env} is not supported; rrd_jax.cli.pytorch_flags trains LIBERO reward "
                    f"models ({', '.join(LIBERO_ENVS)}) or the full agent on "
                    f"{', '.join(schema.ENV_NAMES)}")
  if args.alg != "rrd":
    raise UserError(f"--alg {args.alg} is not supported; only rrd")
  if not args.rrd_reward_only:
    raise UserError(f"--rrd_reward_only False (the full RRD-SAC agent) needs an --env among "
                    f"{', '.join(schema.ENV_NAMES)}; LIBERO runs train the reward model only "
                    "(--rrd_reward_only True)")
  episodes = _episodes_per_batch(args)
  for name in ("epochs", "cycles"):
    if getattr(args, name) < 1:
      raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
  tag = _tag(args)
  num_steps = args.epochs * args.cycles
  overrides = {
      "data.dataset_dir": args.libero_dataset_path,
      "data.image_size": args.libero_image_size,
      "rrd.sample_size": args.rrd_sample_size,
      "rrd.episodes_per_batch": episodes,
      "rrd.bias_correction": args.rrd_bias_correction,
      "rrd.loss_form": "return",
      "train.num_steps": num_steps,
      "eval.every_steps": args.cycles,  # evaluate once per epoch
      "train.log_every_steps": max(1, min(50, args.cycles)),
      "checkpoint.dir": os.path.abspath(os.path.join(args.checkpoint_dir, tag)),
      "checkpoint.every_steps": args.save_freq * args.cycles,
      "checkpoint.save_final": args.save_final,
      "seed": args.seed,
  }
  return os.path.join("log", tag), overrides


def _episodes_per_batch(args):
  """rrd_batch_size // rrd_sample_size, the old tool's episodes per reward-model batch."""
  if args.rrd_sample_size < 1:
    raise UserError(f"--rrd_sample_size must be >= 1, got {args.rrd_sample_size}")
  episodes = args.rrd_batch_size // args.rrd_sample_size
  if episodes < 1:
    raise UserError(f"--rrd_batch_size {args.rrd_batch_size} must be at least --rrd_sample_size "
                    f"{args.rrd_sample_size} (episodes per batch = their quotient)")
  return episodes


def _tag(args):
  """The run's name (log/<tag>/, <checkpoint_dir>/<tag>/): a name, never a path."""
  tag = args.tag or f"{args.alg}-{args.env}"
  if os.sep in tag or (os.altsep and os.altsep in tag) or tag in (".", ".."):
    raise UserError(f"--tag {tag!r} must be a name, not a path (it names log/<tag>/)")
  return tag


def is_online(args):
  return args.env in schema.ENV_NAMES


def online_variant(env_name):
  """configs/mujoco_rrd_sac.py's variant for a task name (Hopper-v5 -> hopper)."""
  return env_name.split("-")[0].lower()


def translate_online(args):
  """Old flags of the full agent -> (workdir, config spec, {field: value}) for
  configs/mujoco_rrd_sac.py."""
  if args.rrd_reward_only:
    raise UserError(f"--rrd_reward_only True trains a reward model from a LIBERO dataset; with "
                    f"--env {args.env} use --rrd_reward_only False (the full RRD-SAC agent)")
  if args.alg not in ONLINE_ALGS:
    raise UserError(f"--alg {args.alg} is not supported with --env {args.env}; use one of "
                    f"{', '.join(ONLINE_ALGS)}")
  if args.basis_alg != "sac":
    raise UserError(f"--basis_alg {args.basis_alg} is not supported; only sac")
  env_type = args.env_type or "ep_rews"
  if env_type not in ("ep_rews", "normal"):
    raise UserError(f"--env_type {env_type} is not supported; use ep_rews or normal")
  kind = ONLINE_ALGS[args.alg]
  if kind == "rrd" and args.rrd_bias_correction:
    kind = "rrd_lrd"
  if env_type == "normal":
    if args.alg != "sac":
      raise UserError(f"--alg {args.alg} redistributes an episodic reward; use --env_type ep_rews "
                      "(or --alg sac for SAC on the dense reward)")
    kind = "dense"
  episodes = _episodes_per_batch(args)
  for name in ("epochs", "cycles", "iterations", "timesteps", "test_rollouts"):
    if getattr(args, name) < 1:
      raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
  tag = _tag(args)
  cycle_steps = args.iterations * args.timesteps
  overrides = {
      "reward.kind": kind,
      "rrd.sample_size": args.rrd_sample_size,
      "rrd.episodes_per_batch": episodes,
      "sac.batch_size": args.batch_size,
      "replay.capacity": args.buffer_size,
      "train.total_env_steps": args.epochs * args.cycles * cycle_steps,
      "train.warmup_steps": args.warmup,
      "train.env_steps_per_call": args.timesteps,
      "train.updates_per_call": args.train_batches,
      "train.log_every_steps": cycle_steps,
      "eval.every_steps": cycle_steps,  # test rollouts once per cycle
      "eval.episodes": args.test_rollouts,
      "checkpoint.dir": os.path.abspath(os.path.join(args.checkpoint_dir, tag)),
      "checkpoint.every_steps": args.save_freq * args.cycles * cycle_steps,
      "checkpoint.save_final": args.save_final,
      "seed": args.seed,
  }
  for name, field in ONLINE_OPTIONAL.items():
    if getattr(args, name) is not None:
      overrides[field] = getattr(args, name)
  return os.path.join("log", tag), f"{ONLINE_CONFIG}:{online_variant(args.env)}", overrides


def load_online_config(config_spec, overrides):
  """The config of a `translate_online` spec (a shipped config file)."""
  path, _, variant = loading.config_file(config_spec).partition(":")
  return loading.load_config(path, variant, overrides)


def new_style_command(workdir, overrides, config=LIBERO_CONFIG):
  parts = ["python", "-m", "rrd_jax.cli.train", "--config", config, "--workdir", workdir]
  parts += [f"--config.{k}={v}" for k, v in overrides.items()]
  return " ".join(shlex.quote(p) for p in parts)


@cli_main
def main(argv=None):
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  args = make_parser().parse_args(argv)
  if is_online(args):
    return _run_online(args)
  workdir, overrides = translate(args)
  if args.libero_dataset_path:  # checked before log/<tag>/ is created
    from rrd_jax.data import rlds  # pylint: disable=import-outside-toplevel
    try:
      rlds.open_builder(args.libero_dataset_path)
    except UserError as e:
      raise UserError(f"--libero_dataset_path: {e}") from None
  if args.cuda and jax.default_backend() == "cpu":
    print("--cuda: no accelerator found; running on CPU.")
  ignored = [f"--{n}" for n in ("iterations", "train_batches", "batch_size")
             if getattr(args, n) != make_parser().get_default(n)]
  if ignored:
    print(f"Note: {', '.join(ignored)} have no effect with --rrd_reward_only True "
          f"(the old tool also ignored them there).")
  print(f"Equivalent command:\n  {new_style_command(workdir, overrides)}", flush=True)
  config = loading.load_config(overrides=overrides)
  compile_cache.enable(config.compile_cache_dir)
  return train.train_and_evaluate(config, workdir)


def _run_online(args):
  workdir, config_spec, overrides = translate_online(args)
  if args.cuda and jax.default_backend() == "cpu":
    print("--cuda: no accelerator found; running on CPU.")
  print(f"Equivalent command:\n  {new_style_command(workdir, overrides, config_spec)}", flush=True)
  config = load_online_config(config_spec, overrides)
  compile_cache.enable(config.compile_cache_dir)
  return train.train_and_evaluate(config, workdir)


if __name__ == "__main__":
  main(sys.argv[1:])
