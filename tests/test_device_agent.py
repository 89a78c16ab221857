"""The MJX backend's device-side bookkeeping (rrd_jax/rl/device_agent.py) against the host
backend's, and a short MJX run end to end.

The storage check drives the device's running-episode rows and `_finish` with synthetic
transitions from 2 members x 2 envs (episodes of random lengths, ending on different steps) and
compares the replay buffers, IRCR heaps included, with the host backend's path for the same
episodes (replay.member_blocks + insert, heap_slot + heap_put), field by field.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrd_jax.rl import agent_loop, device_agent, envs, replay
from tests.rl_helpers import online_config

OBS, ACT, STEPS = 3, 2, 6


def _synthetic_streams(members, per_member, num_steps, seed=0):
  """Per env a stream of transitions: episodes of random lengths 1..STEPS, some terminal."""
  rng = np.random.default_rng(seed)
  streams = []
  for _ in range(members * per_member):
    rows, episode = [], []
    while len(rows) < num_steps:
      length = int(rng.integers(1, STEPS + 1))
      dense = rng.normal(size=length).astype(np.float32)
      terminal = length < STEPS and rng.random() < 0.5
      for t in range(length):
        rows.append({"observation": rng.normal(size=OBS).astype(np.float32),
                     "action": rng.uniform(-1, 1, ACT).astype(np.float32),
                     "next_observation": rng.normal(size=OBS).astype(np.float32),
                     "dense_reward": dense[t], "step_in_episode": t,
                     "episode_return": np.float32(dense[:t + 1].sum()),
                     "done": t == length - 1 or False,
                     "terminal": np.float32(terminal and t == length - 1)})
        rows[-1]["reward"] = rows[-1]["episode_return"] if rows[-1]["done"] else np.float32(0)
      episode.append(length)
    streams.append(rows[:num_steps])
  return streams


def _host_buffers(streams, members, per_member, ircr):
  """The host backend's bookkeeping of the same streams."""
  finished = [[] for _ in range(members)]
  running = [[] for _ in streams]
  for step in range(len(streams[0])):
    for env, stream in enumerate(streams):
      row = stream[step]
      running[env].append((row["observation"], row["action"], row["next_observation"],
                           float(row["reward"]), float(row["dense_reward"]),
                           float(row["terminal"])))
      if row["done"]:
        finished[env // per_member].append(envs._to_episode(running[env], env))  # noqa: SLF001
        running[env] = []
  buffers = jax.tree.map(lambda *x: jnp.stack(x), *[
      replay.create(40, OBS, ACT, heap_slots=2, heap_episode_steps=STEPS) for _ in range(members)])
  for block in replay.member_blocks(finished):
    buffers = jax.vmap(replay.insert)(buffers, block)
  heap_returns, heap_lengths = np.zeros((members, 2)), np.zeros((members, 2), int)
  for m, done in enumerate(finished):
    for episode in done if ircr[m] else ():
      slot = replay.heap_slot(heap_returns[m], heap_lengths[m], episode.episode_return)
      if slot is not None:
        buffers = replay.heap_put(buffers, m, slot, replay.heap_rows(episode, STEPS))
        heap_returns[m, slot], heap_lengths[m, slot] = episode.episode_return, len(episode)
  return buffers, sum(map(len, finished))


def test_device_storage_matches_the_host_backends():
  members, per_member, num_steps = 2, 2, 30
  ircr = np.array([True, False])
  streams = _synthetic_streams(members, per_member, num_steps)
  buffers = jax.tree.map(lambda *x: jnp.stack(x), *[
      replay.create(40, OBS, ACT, heap_slots=2, heap_episode_steps=STEPS) for _ in range(members)])
  pending = device_agent._pending(members * per_member, STEPS, OBS, ACT)  # noqa: SLF001
  finish = jax.jit(lambda b, p, t: device_agent._finish(b, p, t, members,  # noqa: SLF001
                                                        jnp.asarray(ircr)))
  for step in range(num_steps):
    transition = {k: jnp.asarray(np.stack([s[step][k] for s in streams]))
                  for k in streams[0][0]}
    pending = device_agent._record(pending, transition)  # noqa: SLF001
    if bool(jnp.any(transition["done"])):
      buffers = finish(buffers, pending, transition)
  expected, episodes = _host_buffers(streams, members, per_member, ircr)
  assert episodes >= 8  # several episodes, some ending on the same step in different envs
  for field in expected.__dataclass_fields__:
    np.testing.assert_allclose(np.asarray(getattr(buffers, field)),
                               np.asarray(getattr(expected, field)), rtol=1e-6, err_msg=field)


def test_insert_packs_scattered_valid_rows_like_a_prefix():
  rng = np.random.default_rng(1)
  valid = rng.random(64) < 0.4
  rows = {"observation": rng.normal(size=(64, OBS)).astype(np.float32),
          "action": rng.normal(size=(64, ACT)).astype(np.float32),
          "next_observation": rng.normal(size=(64, OBS)).astype(np.float32),
          "reward": rng.normal(size=64).astype(np.float32),
          "dense_reward": rng.normal(size=64).astype(np.float32),
          "terminal": np.zeros(64, np.float32), "step_in_episode": np.zeros(64, np.int32),
          "episode_length": np.ones(64, np.int32),
          "episode_return": rng.normal(size=64).astype(np.float32)}
  packed = {k: np.concatenate([v[valid], np.zeros_like(v[~valid])]) for k, v in rows.items()}
  packed["valid"] = np.arange(64) < valid.sum()
  for limit in (40, 16):  # 16: fewer rows than the valid ones, only the last 16 are kept
    buffer = replay.create(40, OBS, ACT, limit=limit)
    ours = replay.insert(buffer, dict(rows, valid=valid))
    theirs = replay.insert(buffer, packed)
    for field in ours.__dataclass_fields__:
      np.testing.assert_array_equal(np.asarray(getattr(ours, field)),
                                    np.asarray(getattr(theirs, field)), err_msg=field)


def test_heap_offer_follows_heap_slot():
  rng = np.random.default_rng(2)
  buffer = replay.create(8, OBS, ACT, heap_slots=3, heap_episode_steps=4)
  heap_returns, heap_lengths = np.zeros(3, np.float32), np.zeros(3, np.int32)
  offer = jax.jit(replay.heap_offer)
  for i in range(40):
    value = np.float32(np.round(rng.normal() * 5, 0))  # ties: must not replace
    offered = bool(rng.random() < 0.8)
    length = int(rng.integers(1, 5))
    rows = {"observation": np.full((4, OBS), i, np.float32), "action": np.zeros((4, ACT)),
            "next_observation": np.zeros((4, OBS)), "terminal": np.zeros(4),
            "episode_return": value, "episode_length": np.int32(length)}
    buffer = offer(buffer, rows, offered)
    slot = replay.heap_slot(heap_returns, heap_lengths, value) if offered else None
    if slot is not None:
      heap_returns[slot], heap_lengths[slot] = value, length
    np.testing.assert_array_equal(np.asarray(buffer.heap_return), heap_returns)
    np.testing.assert_array_equal(np.asarray(buffer.heap_length), heap_lengths)


@pytest.mark.slow
def test_an_mjx_population_runs_on_the_device_and_logs_eval_returns(repo_root, tmp_path):
  """rrd and ircr members on HalfCheetah (50-step episodes) with env.backend=mjx: both log
  eval/return, their buffers hold whole episodes only, IRCR's heap fills."""
  config = online_config(repo_root, "halfcheetah", **{
      "env.backend": "mjx", "env.max_episode_steps": 50, "env.num_envs": 2,
      "population.reward_kinds": "rrd,ircr", "sac.hidden_sizes": (32, 32),
      "rrd.hidden_sizes": (32, 32), "rrd.sample_size": 8, "replay.capacity": 2000,
      "ircr.replay_capacity": 1000, "ircr.batch_size": 64, "sac.batch_size": 32,
      "train.total_env_steps": 400, "train.warmup_steps": 100, "train.env_steps_per_call": 50,
      "train.updates_per_call": 10, "train.log_every_steps": 100, "eval.every_steps": 200,
      "eval.episodes": 2, "checkpoint.every_steps": 0, "compile_cache_dir": ""})
  results = agent_loop.train_and_evaluate(config, str(tmp_path), log=lambda *_: None)
  assert set(results) == {"rrd_seed0", "ircr_seed0"}
  for name, row in results.items():
    assert row["env_steps"] == 400 and np.isfinite(row["eval/return"])
    with open(tmp_path / name / "metrics.jsonl", encoding="utf-8") as f:
      lines = [json.loads(line) for line in f]
    evals = [r for r in lines if "eval/return" in r]
    assert [r["env_steps"] for r in evals] == [200, 400]
    trained = [r for r in lines if "train/critic_loss" in r]
    assert trained and all(np.isfinite(r["train/critic_loss"]) for r in trained)
    assert any("train/episode_return" in r for r in lines)
  assert results["rrd_seed0"]["episodes"] == 16  # 2 members x 400 steps / 50-step episodes
  assert os.path.isdir(tmp_path / "checkpoints")
