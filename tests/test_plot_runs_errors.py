"""rrd_jax.cli.plot_runs on inputs it cannot use: one `error:` sentence, exit 2, nothing written."""

import json
import os

import pytest

from rrd_jax.cli import plot_runs
from rrd_jax.rl import curves


def _agent_run(root, env="Hopper-v5", kind="rrd", seed=0, returns=(5.0,)):
  """A minimal agent run directory: config.json and evaluations every 100 env steps."""
  os.makedirs(root)
  config = {"kind": "agent", "seed": seed, "env": {"name": env}, "reward": {"kind": kind}}
  with open(os.path.join(root, "config.json"), "w", encoding="utf-8") as f:
    json.dump({"config": config}, f)
  with open(os.path.join(root, "metrics.jsonl"), "w", encoding="utf-8") as f:
    for i, value in enumerate(returns):
      f.write(json.dumps({"step": 100 * (i + 1), "eval/return": value}) + "\n")
  return str(root)


def _reward_model_run(root):
  os.makedirs(root)
  with open(os.path.join(root, "config.json"), "w", encoding="utf-8") as f:
    json.dump({"config": {"kind": "reward_model", "seed": 0}}, f)
  return str(root)


@pytest.mark.parametrize("case,message", [
    ("offline", "is not an agent run"),
    ("foreign", "is not an rrd_jax run's config.json"),
    ("txt", "a figure is written as one of"),
    ("missing_out_dir", "does not exist"),
    ("missing_summary_dir", "does not exist"),
])
def test_bad_plot_runs_input_is_one_sentence(case, message, tmp_path, capsys):
  run = _agent_run(tmp_path / "run")
  argv = {"offline": [_reward_model_run(tmp_path / "offline")],
          "foreign": [str(tmp_path / "foreign")],
          "txt": [run, "--out", str(tmp_path / "plot.txt")],
          "missing_out_dir": [run, "--out", str(tmp_path / "no" / "plot.png")],
          "missing_summary_dir": [run, "--summary", str(tmp_path / "no" / "s.json")]}[case]
  if case == "foreign":
    os.makedirs(tmp_path / "foreign")
    (tmp_path / "foreign" / "config.json").write_text('{"x": 1}', encoding="utf-8")
  before = sorted(os.listdir(tmp_path))
  with pytest.raises(SystemExit) as e:
    plot_runs.main(argv + (["--out", str(tmp_path / "cmp.png")] if "--out" not in argv else []))
  assert e.value.code == 2
  errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0]
  assert sorted(os.listdir(tmp_path)) == before


def test_plot_runs_writes_the_comparison(tmp_path):
  run = _agent_run(tmp_path / "run")
  result = plot_runs.main([run, "--out", str(tmp_path / "cmp.png"),
                           "--summary", str(tmp_path / "s.json")])
  assert result["rrd"]["final_return_mean"] == 5.0
  assert os.path.getsize(tmp_path / "cmp.png") > 0


def test_plot_runs_draws_one_panel_per_task(tmp_path):
  """Runs of several tasks: a panel per task, the same colour for a reward kind in every panel,
  and a summary row per (task, kind) with the mean over seeds."""
  tasks = {"Walker2d-v5": str(tmp_path / "walker2d"), "Swimmer-v5": str(tmp_path / "swimmer")}
  for env, directory in tasks.items():
    for kind in ("rrd", "ircr"):
      for seed in (0, 1):
        _agent_run(os.path.join(directory, f"{kind}_seed{seed}"), env, kind, seed,
                   returns=(1.0, 2.0 + seed + (kind == "rrd"), 3.0 + seed))
  groups = curves.group_runs(curves.find_runs(list(tasks.values())))
  assert sorted(groups) == ["Swimmer-v5 ircr", "Swimmer-v5 rrd", "Walker2d-v5 ircr",
                            "Walker2d-v5 rrd"]
  fig = curves.comparison_figure(groups, "suite")
  panels = [ax for ax in fig.axes if ax.get_visible()]
  assert sorted(ax.get_title() for ax in panels) == ["Swimmer-v5", "Walker2d-v5"]
  colours = [{line.get_label().split()[0]: line.get_color() for line in ax.get_lines()}
             for ax in panels]
  assert colours[0] == colours[1] and len(colours[0]) == 2
  result = plot_runs.main([*tasks.values(), "--out", str(tmp_path / "suite.png")])
  assert result["Walker2d-v5 rrd"]["final_return_mean"] == pytest.approx(3.5)
  assert result["Walker2d-v5 rrd"]["mean_return_last_3_evals"] == pytest.approx((1 + 3.5 + 3.5) / 3)
  assert os.path.getsize(tmp_path / "suite.png") > 0
