"""The paper's task suite as one prepared command: task x reward kind x seed on the MJX backend,
plus one task on the gymnasium backend for the throughput comparison.

python -m benchmarks.agent_suite [--quick | --smoke] [--tasks hopper,walker2d,...]
    [--kinds rrd,ircr,...] [--seeds 3] [--env-steps N] [--num-envs E] [--budget-s S] [--workdir DIR] [--out RESULT.json]

For each task, one population (configs/mujoco_rrd_sac.py:<task>_comparison: every kind x seeds,
trained side by side) runs with env.backend=mjx for --env-steps env steps per member, its
environments batched on the device (--num-envs per member). Then the first task runs again on
the gymnasium backend, one env per member, for --gym-env-steps, the same population.
Recorded per run: wall time (compilation included), env steps/s and updates/s per member and for
the whole population (medians over the logged intervals after the first, which holds the
compilation; the loop's clock excludes evaluation), and per kind the final eval return and the
mean of the last 3 evals (mean +- std over seeds, with the per-seed values and the step count).
Evaluation: eval.episodes true-return episodes every --env-steps / 4 steps.
Runs that would start after --budget-s seconds are skipped (recorded as such); the JSON is
rewritten after every run, so a run cut short still leaves the finished ones in RESULT.json.

Settings scaled to the short runs (the rest are the presets'): warm-up min(10k, steps / 10);
replay capacities min(preset, steps) (a ring that never wraps holds the same data at a fraction
of the memory); one gradient step per env step as the reference, train.env_steps_per_call =
updates_per_call = --call-steps (default 1000 on an accelerator, fewer calls from the host).
--quick (this CPU, <= 3 minutes): HalfCheetah, rrd + episodic x 1 seed, 600 env steps, 50-step
episodes and 64-64 networks; gymnasium side the same. --smoke (seconds past the compilation):
the same with 200 env steps, 50 per call, 25-step episodes and 16-16 networks; it checks that the
command runs and writes its figures.
"""

import argparse
import os
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import common  # noqa: E402  pylint: disable=wrong-import-position
from configs import mujoco_rrd_sac  # noqa: E402  pylint: disable=wrong-import-position
from rrd_jax.rl import agent_loop  # noqa: E402  pylint: disable=wrong-import-position

# --quick and --smoke: (tasks, kinds, seeds, env steps, MJX envs per member, call steps, episode
# steps, hidden sizes, eval episodes)
SMALL = {"quick": ("halfcheetah", "rrd,episodic", 1, 600, 2, 100, 50, (64, 64), 2),
         "smoke": ("halfcheetah", "rrd,episodic", 1, 200, 2, 50, 25, (16, 16), 1)}


def _config(task, args, backend, env_steps, num_envs):
  config = mujoco_rrd_sac.get_config(task + mujoco_rrd_sac.COMPARISON)
  config.population.reward_kinds = args.kinds
  config.population.seeds = args.seeds
  config.env.backend = backend
  config.env.num_envs = num_envs
  small = SMALL.get(args.size)
  config.env.subprocesses = backend == "gymnasium" and not small
  config.train.total_env_steps = env_steps
  config.train.warmup_steps = min(10_000, env_steps // 10)
  call = max(num_envs, args.call_steps - args.call_steps % num_envs)
  config.train.env_steps_per_call = config.train.updates_per_call = call
  config.train.log_every_steps = max(call, env_steps // 10)
  config.eval.every_steps = max(call, env_steps // 4)
  config.replay.capacity = max(config.env.max_episode_steps, min(config.replay.capacity, env_steps))
  config.ircr.replay_capacity = max(config.env.max_episode_steps,
                                    min(config.ircr.replay_capacity, env_steps))
  config.checkpoint.every_steps = 0
  config.checkpoint.save_final = False
  if small:
    config.env.max_episode_steps, hidden, config.eval.episodes = small[6:]
    config.sac.hidden_sizes = config.rrd.hidden_sizes = hidden
  return config


def _read_metrics(run_dir):
  return common.read_metrics(run_dir)


def _median_after_first(rows, key):
  return common.median_or_none(common.values_after_first(rows, key))


def _summary(workdir, members):
  """Per kind: final eval and mean of the last 3 evals, mean +- std over seeds."""
  by_kind = {}
  for name in members:
    evals = [r for r in _read_metrics(os.path.join(workdir, name)) if "eval/return" in r]
    kind = name.rsplit("_seed", 1)[0]
    entry = by_kind.setdefault(kind, {"final": [], "last3": [],
                                      "env_steps": evals[-1]["env_steps"]})
    entry["final"].append(evals[-1]["eval/return"])
    entry["last3"].append(float(np.mean([r["eval/return"] for r in evals[-3:]])))
  return {kind: {"env_steps": e["env_steps"], "seeds": len(e["final"]),
                 "final_mean": float(np.mean(e["final"])), "final_std": float(np.std(e["final"])),
                 "final_per_seed": [round(v, 1) for v in e["final"]],
                 "last3_mean": float(np.mean(e["last3"])), "last3_std": float(np.std(e["last3"]))}
          for kind, e in by_kind.items()}


def run_population(task, args, backend, env_steps, num_envs, workdir):
  """One population run; its throughput and per-kind returns."""
  config = _config(task, args, backend, env_steps, num_envs)
  start = time.perf_counter()
  results = agent_loop.train_and_evaluate(config, workdir, log=lambda *_: None)
  wall = time.perf_counter() - start
  members = sorted(results)
  rows = _read_metrics(os.path.join(workdir, members[0]))
  per_member_env = _median_after_first(rows, "train/env_steps_per_s")
  per_member_updates = _median_after_first(rows, "train/updates_per_s")
  return {"task": task, "backend": backend, "env_steps": env_steps, "members": len(members),
          "num_envs_per_member": num_envs, "wall_s": round(wall, 1),
          "env_steps_per_s_per_member": per_member_env,
          "env_steps_per_s_population": per_member_env and per_member_env * len(members),
          "updates_per_s_per_member": per_member_updates,
          "updates_per_s_population": per_member_updates and per_member_updates * len(members),
          "returns": _summary(workdir, members)}


def _arguments(argv):
  accelerator = jax.default_backend() != "cpu"
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  common.add_size_flags(parser)
  parser.add_argument("--tasks", default=",".join(mujoco_rrd_sac.PAPER_TASKS))
  parser.add_argument("--kinds", default="rrd,ircr,episodic,dense")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--env-steps", type=int, default=50_000 if accelerator else 2_000,
                      help="env steps per member per MJX run")
  parser.add_argument("--gym-env-steps", type=int, default=None,
                      help="env steps per member of the gymnasium run (default: --env-steps / 5)")
  parser.add_argument("--num-envs", type=int, default=16 if accelerator else 2,
                      help="MJX environments per member")
  parser.add_argument("--call-steps", type=int, default=1000 if accelerator else 100,
                      help="env steps (and gradient steps) per jitted call")
  parser.add_argument("--budget-s", type=float, default=540.0,
                      help="no run starts after this many seconds")
  parser.add_argument("--workdir", default=None, help="keep the runs here (default: a temp dir)")
  parser.add_argument("--out", default=None, help="write the results JSON here")
  args = parser.parse_args(argv)
  args.size = common.size_of(args)
  if args.size in SMALL:
    (args.tasks, args.kinds, args.seeds, args.env_steps, args.num_envs,
     args.call_steps) = SMALL[args.size][:6]
  if args.gym_env_steps is None:
    args.gym_env_steps = args.env_steps if args.size in SMALL else max(1000, args.env_steps // 5)
  return args


def run(size="full", argv=()):
  """benchmarks.run's entry: the results dict."""
  size = common.size_name(size)
  return _run(_arguments(list(argv) + ([f"--{size}"] if size != "full" else [])))


def _run(args):
  start = time.perf_counter()
  tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
  plan = [(task, "mjx", args.env_steps, args.num_envs) for task in tasks]
  plan.append((tasks[0], "gymnasium", args.gym_env_steps, 1))
  result = {"machine": common.machine(), "device_kind": jax.devices()[0].device_kind,
            "kinds": args.kinds, "seeds": args.seeds, "runs": []}
  with tempfile.TemporaryDirectory() as tmp:
    root = args.workdir or tmp
    for task, backend, steps, num_envs in plan:
      if time.perf_counter() - start > args.budget_s:
        result["runs"].append({"task": task, "backend": backend, "skipped": "budget spent"})
        continue
      workdir = os.path.join(root, f"{task}_{backend}")
      try:
        result["runs"].append(run_population(task, args, backend, steps, num_envs, workdir))
      except Exception as e:  # pylint: disable=broad-except  (one failure must not lose the rest)
        result["runs"].append({"task": task, "backend": backend, "error": common.error_text(e)})
      result["wall_s"] = round(time.perf_counter() - start, 1)
      if args.out:
        common.write(args.out, result)
  return result


def main(argv=None):
  args = _arguments(argv)
  common.prepare(args.size)
  result = _run(args)
  for row in result["runs"]:
    if "returns" not in row:
      print(row)
      continue
    print(f"{row['task']} ({row['backend']}, {row['members']} members x {row['env_steps']} env "
          f"steps, {row['wall_s']} s): {row['env_steps_per_s_per_member']:.0f} env steps/s per "
          f"member, {row['env_steps_per_s_population']:.0f} for the population")
    for kind, r in row["returns"].items():
      print(f"  {kind}: final {r['final_mean']:.1f} +- {r['final_std']:.1f}, last 3 evals "
            f"{r['last3_mean']:.1f} +- {r['last3_std']:.1f}")


if __name__ == "__main__":
  main()
