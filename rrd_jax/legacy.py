"""The PyTorch tool's command line, translated: python -m rrd_jax.legacy --env libero-10 ... .

Accepts the old flags, prints the equivalent `python -m rrd_jax.train` command, and runs it.
Semantics kept from the old tool in reward-only mode (--rrd_reward_only True):
  - exactly epochs x cycles reward-model updates (--iterations, --train_batches and --batch_size
    only drive the policy learner there, so they have no effect);
  - each update on rrd_batch_size // rrd_sample_size episodes x rrd_sample_size steps, with the
    old tool's "return" loss form (T*m - R)^2 (bias correction, if on, scaled consistently);
  - --save_freq counts epochs; metrics go to log/<tag>/, checkpoints to <checkpoint_dir>/<tag>/.
"""

import argparse
import os
import shlex
import sys

import jax

from rrd_jax import config_utils
from rrd_jax.errors import UserError, cli_main

LIBERO_ENVS = ("libero-10", "libero-spatial", "libero-object", "libero-goal", "libero-90")


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
  p = _Parser(prog="python -m rrd_jax.legacy", description=__doc__,
              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--env", default="libero-10", help="LIBERO suite: " + ", ".join(LIBERO_ENVS))
  p.add_argument("--env_type", default="normal", help="accepted; only 'normal' exists here")
  p.add_argument("--alg", default="rrd", help="only 'rrd'")
  p.add_argument("--basis_alg", default="sac", help="accepted (policy learner; unused reward-only)")
  p.add_argument("--rrd_reward_only", type=_bool, default=True, help="train only the reward model")
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
  return p


def translate(args):
  """Old flags -> (workdir, {config field: value}) for configs/libero_rrd.py."""
  if args.env not in LIBERO_ENVS:
    raise UserError(f"--env {args.env} is not supported; rrd_jax.legacy trains LIBERO reward "
                    f"models ({', '.join(LIBERO_ENVS)})")
  if args.alg != "rrd":
    raise UserError(f"--alg {args.alg} is not supported; only rrd")
  if not args.rrd_reward_only:
    raise UserError("--rrd_reward_only False (the full RRD-SAC agent) is not available in "
                    "rrd_jax.legacy; use --rrd_reward_only True")
  episodes = args.rrd_batch_size // args.rrd_sample_size
  if episodes < 1:
    raise UserError(f"--rrd_batch_size {args.rrd_batch_size} must be at least --rrd_sample_size "
                    f"{args.rrd_sample_size} (episodes per batch = their quotient)")
  for name in ("epochs", "cycles"):
    if getattr(args, name) < 1:
      raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
  tag = args.tag or f"{args.alg}-{args.env}"
  num_steps = args.epochs * args.cycles
  overrides = {
      "data.dataset_dir": args.libero_dataset_path,
      "data.image_size": args.libero_image_size,
      "rrd.sample_size": args.rrd_sample_size,
      "rrd.episodes_per_batch": episodes,
      "rrd.bias_correction": args.rrd_bias_correction,
      "rrd.loss_form": "return",
      "train.num_steps": num_steps,
      "train.eval_every": args.cycles,  # evaluate once per epoch
      "train.log_every": max(1, min(50, args.cycles)),
      "checkpoint.dir": os.path.join(args.checkpoint_dir, tag),
      "checkpoint.every_steps": args.save_freq * args.cycles,
      "checkpoint.save_final": args.save_final,
      "seed": args.seed,
  }
  return os.path.join("log", tag), overrides


def new_style_command(workdir, overrides):
  parts = ["python", "-m", "rrd_jax.train", "--config", "configs/libero_rrd.py", "--workdir", workdir]
  parts += [f"--config.{k}={v}" for k, v in overrides.items()]
  return " ".join(shlex.quote(p) for p in parts)


@cli_main
def main(argv=None):
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  args = make_parser().parse_args(argv)
  workdir, overrides = translate(args)
  if args.cuda and jax.default_backend() == "cpu":
    print("--cuda: no accelerator found; running on CPU.")
  ignored = [f"--{n}" for n in ("iterations", "train_batches", "batch_size")
             if getattr(args, n) != make_parser().get_default(n)]
  if ignored:
    print(f"Note: {', '.join(ignored)} have no effect with --rrd_reward_only True "
          f"(the old tool also ignored them there).")
  print(f"Equivalent command:\n  {new_style_command(workdir, overrides)}", flush=True)
  from rrd_jax.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
  return train_and_evaluate(config_utils.load_config(overrides=overrides), workdir)


if __name__ == "__main__":
  main(sys.argv[1:])
