"""The episodic-reward wrapper: zero before the end, the summed reward at the last step, and a
time-out that truncates without being a terminal."""

import gymnasium as gym
import numpy as np
import pytest

from rrd_jax.errors import UserError
from rrd_jax.rl import envs


class CountingEnv(gym.Env):
  """Reward t+1 on step t; terminates after `terminate_after` steps (never if None)."""
  observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
  action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

  def __init__(self, terminate_after=None):
    self.terminate_after = terminate_after
    self.t = 0

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.t = 0
    return np.zeros(2, np.float32), {}

  def step(self, action):
    self.t += 1
    terminated = self.terminate_after is not None and self.t >= self.terminate_after
    return np.full(2, self.t, np.float32), float(self.t), terminated, False, {}


def rollout(env):
  env.reset(seed=0)
  steps = []
  while True:
    _, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    steps.append((reward, terminated, truncated, info["dense_reward"]))
    if terminated or truncated:
      return steps


def test_time_limit_sums_at_the_end_and_is_not_terminal():
  env = envs.EpisodicReward(gym.wrappers.TimeLimit(CountingEnv(), max_episode_steps=5))
  steps = rollout(env)
  rewards, terminated, truncated, dense = map(list, zip(*steps))
  assert rewards == [0, 0, 0, 0, 15]  # 1 + 2 + 3 + 4 + 5 at the last step only
  assert dense == [1, 2, 3, 4, 5]
  assert terminated == [False] * 5 and truncated == [False] * 4 + [True]
  second = rollout(env)  # the running sum restarts on reset
  assert [s[0] for s in second] == [0, 0, 0, 0, 15]


def test_terminal_episode_sums_at_the_end():
  env = envs.EpisodicReward(gym.wrappers.TimeLimit(CountingEnv(terminate_after=3),
                                                   max_episode_steps=10))
  assert [(s[0], s[1], s[2]) for s in rollout(env)] == [(0, False, False), (0, False, False),
                                                        (6, True, False)]


def test_env_batch_hands_out_finished_episodes():
  batch = envs.EnvBatch("Pendulum-v1", num_envs=2, max_episode_steps=5, seed=0)
  finished = []
  for _ in range(7):
    finished += batch.step(batch.random_actions())
  assert len(finished) == 2  # each env finished one 5-step episode; 2-step ones still run
  for episode in finished:
    assert len(episode) == 5
    np.testing.assert_array_equal(episode.terminal, 0.0)  # a time-out is not a terminal
    np.testing.assert_array_equal(episode.reward[:-1], 0.0)
    np.testing.assert_allclose(episode.reward[-1], episode.dense_reward.sum(), rtol=1e-6)
    np.testing.assert_array_equal(episode.observation[1:], episode.next_observation[:-1])
    assert np.all(np.abs(episode.action) <= 1.0)
  batch.close()


def test_actions_are_rescaled_to_unit_box():
  env = envs.make_env("Pendulum-v1", 10)  # Pendulum's native bounds are [-2, 2]
  assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)


def test_unknown_env_is_a_user_error():
  with pytest.raises(UserError, match="env.name"):
    envs.make_env("Hoper-v5", 1000)
