"""Learning curves of online (agent) runs: each run's eval/return against env steps, runs grouped
by reward kind (and env when several) with mean +- std over seeds, and a per-group summary.
Used by the agent loop (learning_curve.png, a population's comparison) and rrd_jax.cli.plot_runs.
"""

import collections
import os

import numpy as np

from rrd_jax.config import loading
from rrd_jax.run import metrics
from rrd_jax.train import plots
from rrd_jax.util.errors import UserError

plt = plots.plt
CURVE_FILE = "learning_curve.png"


def read_curve(workdir):
  """(env_steps [N], eval returns [N]) from WORKDIR/metrics.jsonl (the last row per step)."""
  points = {int(row["step"]): float(row["eval/return"]) for row in metrics.read_rows(workdir)
            if row.get("eval/return") is not None}
  steps = np.asarray(sorted(points), np.int64)
  return steps, np.asarray([points[s] for s in steps], np.float64)


def _run_config(workdir):
  return loading.read_run_config(workdir)[0]


def save_learning_curve(workdir):
  """WORKDIR/learning_curve.png: this run's eval/return against env steps."""
  steps, returns = read_curve(workdir)
  config = _run_config(workdir)
  fig, ax = plt.subplots(figsize=(5.2, 3.6))
  ax.plot(steps, returns, marker="o", ms=3)
  ax.set_xlabel("environment steps")
  ax.set_ylabel("eval return (true dense)")
  ax.set_title(f"{config['env']['name']} - {config['reward']['kind']} (seed {config['seed']})",
               fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  plots.save(fig, os.path.join(workdir, CURVE_FILE))


def find_runs(paths):
  """Run workdirs: each path's subdirectories that are runs (a population's members, or a
  directory of runs), else the path itself when it is a run."""
  runs = []
  for path in paths:
    inner = sorted(os.path.join(path, d) for d in os.listdir(path)
                   if os.path.exists(os.path.join(path, d, "config.json"))
                   ) if os.path.isdir(path) else []
    if inner:
      runs += inner
    elif os.path.exists(os.path.join(path, "config.json")):
      runs.append(path)
    else:
      raise UserError(f"{path} is neither a run directory (with config.json) nor a directory of runs")
  return runs


def group_runs(runs):
  """{label: [(workdir, steps, returns, seed)]}: by reward.kind (and env when several)."""
  configs = {run: _run_config(run) for run in runs}
  for run, config in configs.items():
    if "env" not in config or "reward" not in config:
      raise UserError(f"{run} is not an agent run (configs/mujoco_rrd_sac.py); plot_runs compares "
                      "the learning curves of agent runs")
  several_envs = len({c["env"]["name"] for c in configs.values()}) > 1
  groups = collections.defaultdict(list)
  for run, config in configs.items():
    steps, returns = read_curve(run)
    if not len(steps):
      continue
    label = config["reward"]["kind"]
    if several_envs:
      label = f"{config['env']['name']} {label}"
    groups[label].append((run, steps, returns, config["seed"]))
  return dict(sorted(groups.items()))


def aggregate(members):
  """(common steps, mean [N], std [N]) over runs, on the steps every run evaluated at."""
  common = members[0][1]
  for _, steps, _, _ in members[1:]:
    common = np.intersect1d(common, steps)
  curves = np.stack([np.interp(common, steps, returns) for _, steps, returns, _ in members])
  return common, curves.mean(0), curves.std(0)


def summary(groups):
  out = {}
  for label, members in groups.items():
    steps, mean, std = aggregate(members)
    final = [float(returns[steps_ == steps[-1]][0]) if len(steps) else None
             for _, steps_, returns, _ in members]
    out[label] = {"runs": len(members), "seeds": [m[3] for m in members],
                  "env_steps": int(steps[-1]) if len(steps) else 0,
                  "final_return_mean": float(mean[-1]) if len(steps) else None,
                  "final_return_std": float(std[-1]) if len(steps) else None,
                  "final_returns": final,
                  "mean_return_last_3_evals": float(np.mean(mean[-3:])) if len(steps) else None,
                  "workdirs": [m[0] for m in members]}
  return out


def _draw(ax, groups, colours):
  for label, members in groups.items():
    steps, mean, std = aggregate(members)
    kind = _run_config(members[0][0])["reward"]["kind"]
    ax.plot(steps, mean, color=colours[kind], label=f"{kind} (n={len(members)})")
    ax.fill_between(steps, mean - std, mean + std, color=colours[kind], alpha=0.2)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)


def comparison_figure(groups, title=""):
  """Mean +- std eval/return per group: one panel per env (task), one colour per reward kind
  (the same in every panel)."""
  by_env = collections.defaultdict(dict)
  for label, members in groups.items():
    by_env[_run_config(members[0][0])["env"]["name"]][label] = members
  kinds = sorted({_run_config(m[0][0])["reward"]["kind"] for m in groups.values()})
  colours = {kind: f"C{i}" for i, kind in enumerate(kinds)}
  columns = min(len(by_env), 4)
  rows = -(-len(by_env) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
  for ax, (env, env_groups) in zip(axes.flat, sorted(by_env.items())):
    _draw(ax, env_groups, colours)
    ax.set_title(env if len(by_env) > 1 else title or env, fontsize=9)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("eval return (true dense), mean +- std")
  for ax in list(axes.flat)[len(by_env):]:
    ax.set_visible(False)
  if title and len(by_env) > 1:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig
