"""rrd_jax.plot_runs on inputs it cannot use: one `error:` sentence, exit 2, nothing written."""

import json
import os

import pytest

from rrd_jax import plot_runs


def _agent_run(root):
  """A minimal agent run directory: config.json and one evaluation in metrics.jsonl."""
  os.makedirs(root)
  config = {"kind": "agent", "seed": 0, "env": {"name": "Hopper-v5"}, "reward": {"kind": "rrd"}}
  with open(os.path.join(root, "config.json"), "w", encoding="utf-8") as f:
    json.dump({"config": config}, f)
  with open(os.path.join(root, "metrics.jsonl"), "w", encoding="utf-8") as f:
    f.write(json.dumps({"step": 100, "eval/return": 5.0}) + "\n")
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
