"""Populations (config.population): members train as they would alone, and the CLI writes a run
directory per member plus the comparison."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrd_jax.rl import curves, learner, population, replay, rewards, sac
from tests.rl_helpers import filled_buffer, make_episode, member_slice, online_config
from tests.test_rl_train import run_cli

OBS, ACT = 3, 2


def small_config(repo_root, **overrides):
  return online_config(repo_root, **{
      "sac.hidden_sizes": (8,), "rrd.hidden_sizes": (8,), "sac.batch_size": 16,
      "rrd.sample_size": 4, "rrd.episodes_per_batch": 2, "env.max_episode_steps": 20,
      **overrides})


@pytest.mark.slow
def test_members_of_a_mixed_population_train_as_they_would_alone(repo_root):
  """rrd, rrd_lrd (bias-corrected) and ircr side by side, each with its own seed and
  buffer: every member's state after 2 fused steps equals the same run trained alone (all of it
  for the rrd kinds; the agent for the others, whose unused reward model trains only in a
  population that has one). IRCR keeps its own settings there: a larger batch (half from its
  heap), another polyak, a smaller ring and a fixed temperature."""
  config = small_config(repo_root, **{"ircr.batch_size": 24, "ircr.polyak": 0.9,
                                      "ircr.replay_capacity": 40, "ircr.fixed_alpha": 0.3})
  hp = sac.SACParams.from_config(config.sac, ACT)
  kinds = ("rrd", "rrd_lrd", "ircr")
  seeds = [5, 6, 7]
  buffers = [filled_buffer([make_episode(t, seed=t + s) for t in (7, 12, 20, 3)], capacity=64,
                           limit=40 if kind == "ircr" else 64, heap_slots=3, heap_episode_steps=20,
                           heap=[make_episode(t, seed=t + s + 50) for t in (9, 4)])
             for kind, s in zip(kinds, seeds)]
  mixed = learner.make_train_steps(config, hp, kinds, 2)(
      learner.create_members(config, hp, OBS, seeds, kinds), population.stack(buffers),
      jnp.arange(3, dtype=jnp.int32))[0]
  assert float(member_slice(mixed, 2).sac.alpha) == pytest.approx(0.3)
  for m, (kind, seed) in enumerate(zip(kinds, seeds)):
    alone = learner.make_train_steps(config, hp, (kind,), 2)(
        learner.create_members(config, hp, OBS, [seed], [kind]), population.stack([buffers[m]]),
        jnp.zeros(1, jnp.int32))[0]
    mine, solo = member_slice(mixed, m), member_slice(alone, 0)
    if not rewards.uses_reward_model(kind):
      mine, solo = (mine.sac, mine.rng, mine.updates), (solo.sac, solo.rng, solo.updates)
    for x, y in zip(jax.tree.leaves(mine), jax.tree.leaves(solo), strict=True):
      np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6, err_msg=kind)
  # the members differ: their seeds and rewards differ
  first = jax.tree.leaves(member_slice(mixed, 0).sac.actor.params)[0]
  third = jax.tree.leaves(member_slice(mixed, 2).sac.actor.params)[0]
  assert not np.allclose(first, third)


def test_member_blocks_fill_each_members_buffer_with_its_own_episodes():
  episodes = [[make_episode(3, seed=0), make_episode(4, seed=1)], [], [make_episode(2, seed=2)]]
  buffers = population.stack([replay.create(16, OBS, ACT)] * 3)
  insert = jax.jit(jax.vmap(replay.insert))
  for block in replay.member_blocks(episodes):
    buffers = insert(buffers, block)
  np.testing.assert_array_equal(buffers.count, [7, 0, 2])
  np.testing.assert_array_equal(buffers.num_episodes, [2, 0, 1])
  np.testing.assert_array_equal(buffers.episode_return[0, :7], [6, 6, 6, 10, 10, 10, 10])
  np.testing.assert_array_equal(buffers.episode_return[2, :2], [3, 3])
  np.testing.assert_array_equal(buffers.observation[2, :2], episodes[2][0].observation)
  assert replay.member_blocks([[], []]) == []


def test_members_are_every_kind_with_every_seed(repo_root):
  config = small_config(repo_root, **{"seed": 3, "population.seeds": 2,
                                      "population.reward_kinds": "rrd, ircr,rrd"})
  assert population.reward_kinds(config) == ("rrd", "ircr")
  assert [m.name for m in population.members(config)] == [
      "rrd_seed3", "rrd_seed4", "ircr_seed3", "ircr_seed4"]
  single = population.member_config(config, population.members(config)[3])
  assert (single.reward.kind, single.seed, single.population.seeds) == ("ircr", 4, 1)
  plain = small_config(repo_root, **{"reward.kind": "episodic"})
  assert [m.name for m in population.members(plain)] == ["episodic_seed0"]


POPULATION_ARGS = ["--config", "configs/mujoco_rrd_sac.py:pendulum",
                   "--config.population.reward_kinds=dense,rrd", "--config.population.seeds=2",
                   "--config.sac.hidden_sizes=(16,)", "--config.rrd.hidden_sizes=(16,)",
                   "--config.train.warmup_steps=200", "--config.train.log_every_steps=200",
                   "--config.eval.every_steps=200", "--config.eval.episodes=2",
                   "--config.checkpoint.every_steps=400"]


@pytest.fixture(scope="module")
def population_run(repo_root, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("population"))
  result = run_cli(repo_root, POPULATION_ARGS + ["--config.train.total_env_steps=400",
                                                 "--workdir", workdir])
  return workdir, result


@pytest.mark.slow
def test_population_cli_writes_a_run_per_member_and_resumes(population_run, repo_root):
  workdir, first = population_run
  assert first.returncode == 0, first.stderr[-3000:]
  names = ["dense_seed0", "dense_seed1", "rrd_seed0", "rrd_seed1"]
  for name in names:
    with open(os.path.join(workdir, name, "config.json"), encoding="utf-8") as f:
      config = json.load(f)["config"]
    kind, seed = name.split("_seed")
    assert config["reward"]["kind"] == kind and config["seed"] == int(seed)
    rows = [json.loads(line) for line in open(os.path.join(workdir, name, "metrics.jsonl"),
                                              encoding="utf-8")]
    evals = [r for r in rows if "eval/return" in r]
    assert [r["step"] for r in evals] == [200, 400]
    assert all(np.isfinite(r["eval/return"]) for r in evals)
    trained = [r for r in rows if "train/critic_loss" in r]
    assert trained and (("train/rrd_loss" in trained[-1]) == name.startswith("rrd"))
    assert os.path.exists(os.path.join(workdir, name, "learning_curve.png"))
  # the two seeds of a kind explored differently
  returns = {n: json.load(open(os.path.join(workdir, n, "final_metrics.json"), encoding="utf-8"))
             for n in names}
  assert returns["dense_seed0"]["eval/return"] != returns["dense_seed1"]["eval/return"]
  with open(os.path.join(workdir, "comparison.json"), encoding="utf-8") as f:
    comparison = json.load(f)
  assert sorted(comparison) == ["dense", "rrd"] and comparison["rrd"]["runs"] == 2
  assert os.path.exists(os.path.join(workdir, "comparison.png"))
  # plot_runs reads the population's workdir as its members
  assert sorted(curves.group_runs(curves.find_runs([workdir]))) == ["dense", "rrd"]
  second = run_cli(repo_root, POPULATION_ARGS + ["--config.train.total_env_steps=600",
                                                 "--workdir", workdir])
  assert second.returncode == 0, second.stderr[-3000:]
  assert "from env step 400" in second.stdout + second.stderr
  for name in names:
    rows = [json.loads(line) for line in open(os.path.join(workdir, name, "metrics.jsonl"),
                                              encoding="utf-8")]
    assert [r["step"] for r in rows if "eval/return" in r] == [200, 400, 600]


def _metrics(directory):
  with open(os.path.join(directory, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


FOUR_DEVICES = """
import json, runpy, sys
sys.argv = ["rrd_jax.cli.train", *{args!r}]
try:  # the CLI, as a user runs it
  runpy.run_module("rrd_jax.cli.train", run_name="__main__")
except SystemExit as e:
  assert not e.code, e.code
import jax, jax.numpy as jnp
from rrd_jax.rl import learner, population, sac
from rrd_jax.run import parallel
from tests.rl_helpers import filled_buffer, make_episode
from tests.test_rl_population import small_config
config = small_config({root!r})
hp = sac.SACParams.from_config(config.sac, 2)
buffers = population.stack([filled_buffer([make_episode(9, seed=s)], capacity=32) for s in range(4)])
states = learner.create_members(config, hp, 3, [0, 1, 2, 3])
states, buffers, ids = jax.device_put((states, buffers, jnp.zeros(4, jnp.int32)),
                                      parallel.member_sharding(parallel.member_devices(4)))
states, _ = learner.make_train_steps(config, hp, ("rrd",), 2)(states, buffers, ids)
leaves = jax.tree.leaves(states)
print(json.dumps({{"devices": sorted({{len(x.sharding.device_set) for x in leaves}}),
                  "per_device_rows": sorted({{x.addressable_shards[0].data.shape[0] for x in leaves}})}}))
"""


@pytest.mark.slow
def test_population_split_over_four_devices_trains_like_one_device(population_run, repo_root,
                                                                   tmp_path):
  """population.devices: the CLI run of 4 members split over 4 (fake CPU) devices, one member
  each, gives the 1-device run's losses and eval returns (float reassociation aside); and after
  a fused training call every state leaf is still one member per device (no gather)."""
  one, first = population_run
  assert first.returncode == 0, first.stderr[-3000:]
  workdir = str(tmp_path / "four")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=repo_root)
  args = POPULATION_ARGS + ["--config.train.total_env_steps=400", "--workdir", workdir]
  done = subprocess.run([sys.executable, "-c", FOUR_DEVICES.format(root=repo_root, args=args)],
                        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout.strip().splitlines()[-1])
  assert report == {"devices": [4], "per_device_rows": [1]}, report
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    facts = json.load(f)
  assert facts["member_devices"] == 4 and len(facts["devices"]) == 4
  for name in ("dense_seed0", "dense_seed1", "rrd_seed0", "rrd_seed1"):
    mine = [r for r in _metrics(os.path.join(workdir, name)) if r["step"] <= 400]
    alone = [r for r in _metrics(os.path.join(one, name)) if r["step"] <= 400]
    for key in ("eval/return", "train/critic_loss", "train/actor_loss", "train/rrd_loss"):
      got = [r[key] for r in mine if key in r]
      want = [r[key] for r in alone if key in r]
      assert len(got) == len(want) and (got or key == "train/rrd_loss"), (name, key)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
