"""Shared by the tests/test_rl_*.py files: small configs and hand-made replay buffers."""

import os

import jax
import numpy as np

from rrd_jax.config import loading
from rrd_jax.rl import envs, replay

CONFIG_FILE = "configs/mujoco_rrd_sac.py"


def online_config(repo_root, variant="pendulum", **overrides):
  return loading.load_config(os.path.join(repo_root, CONFIG_FILE), variant, overrides)


def make_episode(length, obs_size=3, act_size=2, dense=None, terminal=False, seed=0):
  """An envs.Episode of `length` steps with the given dense rewards (default 1..T)."""
  rng = np.random.default_rng(seed)
  dense = np.arange(1, length + 1, dtype=np.float32) if dense is None else np.asarray(
      dense, np.float32)
  delayed = np.zeros(length, np.float32)
  delayed[-1] = dense.sum()
  term = np.zeros(length, np.float32)
  term[-1] = float(terminal)
  obs = rng.normal(size=(length + 1, obs_size)).astype(np.float32)
  return envs.Episode(observation=obs[:-1], action=rng.uniform(-1, 1, (length, act_size)).astype(
      np.float32), next_observation=obs[1:], reward=delayed, dense_reward=dense, terminal=term)


def filled_buffer(episodes, capacity, obs_size=3, act_size=2, limit=None, heap=(), heap_slots=1,
                  heap_episode_steps=1):
  """A buffer holding `episodes` in its ring and `heap` (episodes) in its first heap slots."""
  buffer = replay.create(capacity, obs_size, act_size, limit=limit, heap_slots=heap_slots,
                         heap_episode_steps=heap_episode_steps)
  insert = jax.jit(replay.insert)
  for block in replay.episodes_to_rows(episodes):
    buffer = insert(buffer, block)
  stacked = jax.tree.map(lambda x: x[None], buffer)
  for slot, episode in enumerate(heap):
    stacked = replay.heap_put(stacked, 0, slot, replay.heap_rows(episode, heap_episode_steps))
  return jax.tree.map(lambda x: x[0], stacked)


def member_slice(tree, index):
  """Member `index` of a member-stacked pytree."""
  return jax.tree.map(lambda leaf: leaf[index], tree)
