"""benchmarks/agent_suite.py's plumbing (the benchmark itself runs on a GPU or with --quick, not
in tests): every task's MJX and gymnasium configs are valid runs, the quick plan is the small one,
and the per-kind summary is computed from the members' metrics as documented."""

import json
import os

import numpy as np
import pytest

from benchmarks import agent_suite
from configs import mujoco_rrd_sac
from rrd_jax.config import schema


@pytest.mark.parametrize("backend", ["mjx", "gymnasium"])
def test_every_task_gives_a_valid_config(backend):
  args = agent_suite._arguments(["--env-steps", "50000", "--num-envs", "16",  # noqa: SLF001
                                 "--call-steps", "1000"])
  for task in mujoco_rrd_sac.PAPER_TASKS:
    num_envs = 16 if backend == "mjx" else 1
    config = agent_suite._config(task, args, backend, 50_000, num_envs)  # noqa: SLF001
    schema.validate_agent(config)
    assert config.env.backend == backend and config.population.seeds == 3
    assert config.population.reward_kinds == "rrd,ircr,episodic,dense"
    assert config.train.env_steps_per_call == config.train.updates_per_call  # 1 update / step
    assert config.replay.capacity == 50_000 and config.train.warmup_steps == 5_000
    assert config.eval.every_steps == 12_500  # 4 evaluations, the last 3 averaged


def test_quick_plan_is_small():
  args = agent_suite._arguments(["--quick"])  # noqa: SLF001
  assert (args.tasks, args.kinds, args.seeds, args.env_steps) == ("halfcheetah", "rrd,episodic",
                                                                  1, 600)
  config = agent_suite._config("halfcheetah", args, "mjx", 600, 2)  # noqa: SLF001
  schema.validate_agent(config)
  assert config.env.max_episode_steps == 50 and tuple(config.sac.hidden_sizes) == (64, 64)


def test_summary_per_kind(tmp_path):
  returns = {"rrd_seed0": [1, 2, 3, 10], "rrd_seed1": [1, 2, 5, 6], "ircr_seed0": [0, 0, 1, 2]}
  for name, values in returns.items():
    os.makedirs(tmp_path / name)
    with open(tmp_path / name / "metrics.jsonl", "w", encoding="utf-8") as f:
      for i, value in enumerate(values):
        f.write(json.dumps({"step": 100 * (i + 1), "train/critic_loss": 1.0}) + "\n")
        f.write(json.dumps({"step": 100 * (i + 1), "env_steps": 100 * (i + 1),
                            "eval/return": value}) + "\n")
  summary = agent_suite._summary(str(tmp_path), sorted(returns))  # noqa: SLF001
  assert summary["rrd"]["final_per_seed"] == [10, 6] and summary["rrd"]["env_steps"] == 400
  assert summary["rrd"]["final_mean"] == 8 and summary["rrd"]["final_std"] == 2
  last3 = [np.mean([2, 3, 10]), np.mean([2, 5, 6])]
  assert summary["rrd"]["last3_mean"] == pytest.approx(np.mean(last3))
  assert summary["rrd"]["last3_std"] == pytest.approx(np.std(last3))
  assert summary["ircr"]["seeds"] == 1 and summary["ircr"]["final_mean"] == 2
