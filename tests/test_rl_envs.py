"""The episodic-reward wrapper: zero before the end, the summed reward at the last step, and a
time-out that truncates without being a terminal."""

import gymnasium as gym
import numpy as np
import pytest

from rrd_jax.rl import envs
from rrd_jax.util.errors import UserError


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


@pytest.mark.parametrize("subprocesses", [False, True])
def test_env_batch_hands_out_finished_episodes(subprocesses):
  batch = envs.EnvBatch("Pendulum-v1", max_episode_steps=5, seeds=[0, 1],
                        subprocesses=subprocesses)
  finished, dense_sum = [], np.zeros(2)
  for _ in range(7):
    done_episodes, dense, done = batch.step(batch.random_actions())
    dense_sum += dense
    assert list(done) == [bool(e) for e in np.isin([0, 1], [d.env_index for d in done_episodes])]
    finished += done_episodes
  assert len(finished) == 2  # each env finished one 5-step episode; 2-step ones still run
  assert sorted(e.env_index for e in finished) == [0, 1]
  for episode in finished:
    assert len(episode) == 5
    np.testing.assert_array_equal(episode.terminal, 0.0)  # a time-out is not a terminal
    np.testing.assert_array_equal(episode.reward[:-1], 0.0)
    np.testing.assert_allclose(episode.reward[-1], episode.dense_reward.sum(), rtol=1e-6)
    # the last step's next observation is the final one, not the reset one
    np.testing.assert_array_equal(episode.observation[1:], episode.next_observation[:-1])
    assert np.all(np.abs(episode.action) <= 1.0)
  assert not np.allclose(finished[0].observation, finished[1].observation)  # own seeds
  # the two running 2-step episodes' rewards are in dense_sum as well
  assert np.all(dense_sum < np.array([e.dense_reward.sum() for e in
                                      sorted(finished, key=lambda e: e.env_index)]))
  batch.close()


def test_subprocess_and_in_process_batches_step_alike():
  """The same seeds and actions give the same transitions and episodes in both backends."""
  batches = [envs.EnvBatch("Pendulum-v1", max_episode_steps=4, seeds=[7, 8], subprocesses=sub)
             for sub in (False, True)]
  for _ in range(6):
    actions = batches[0].random_actions()
    np.testing.assert_array_equal(actions, batches[1].random_actions())
    (done_a, dense_a, _), (done_b, dense_b, _) = (b.step(actions) for b in batches)
    np.testing.assert_allclose(dense_a, dense_b, rtol=1e-6)
    np.testing.assert_allclose(batches[0].observations, batches[1].observations, rtol=1e-6)
    assert [e.env_index for e in done_a] == [e.env_index for e in done_b]
    for a, b in zip(done_a, done_b):
      np.testing.assert_allclose(a.next_observation, b.next_observation, rtol=1e-6)
      np.testing.assert_allclose(a.reward, b.reward, rtol=1e-6)
  for b in batches:
    b.close()


def test_evaluate_sums_each_envs_first_episode():
  batch = envs.EnvBatch("Pendulum-v1", max_episode_steps=6, seeds=[0, 0, 0])
  policy = lambda obs: np.zeros((len(obs), 1), np.float32)  # noqa: E731
  first = envs.evaluate(batch, policy, seeds=[3, 4, 3])
  np.testing.assert_allclose(first[0], first[2])  # same seed, same deterministic episode
  assert first[0] != first[1]
  again = envs.evaluate(batch, policy, seeds=[3, 4, 3])  # reseeded: the same episodes again
  np.testing.assert_allclose(first, again)
  # by hand: one env, 6 steps of the dense reward
  single = envs.make_env("Pendulum-v1", 6)
  single.reset(seed=4)
  total = sum(single.step(np.zeros(1, np.float32))[4]["dense_reward"] for _ in range(6))
  np.testing.assert_allclose(first[1], total, rtol=1e-6)
  batch.close()


def test_actions_are_rescaled_to_unit_box():
  env = envs.make_env("Pendulum-v1", 10)  # Pendulum's native bounds are [-2, 2]
  assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)


def test_unknown_env_is_a_user_error():
  with pytest.raises(UserError, match="env.name"):
    envs.make_env("Hoper-v5", 1000)


def test_the_papers_eight_tasks_have_presets_and_comparisons():
  """configs/mujoco_rrd_sac.py: a preset per paper task (gymnasium v5, its own time limit) and a
  <task>_comparison population (rrd, ircr, episodic, dense x 3 seeds)."""
  from configs import mujoco_rrd_sac  # pylint: disable=import-outside-toplevel
  from rrd_jax.config import loading, schema  # pylint: disable=import-outside-toplevel
  assert len(mujoco_rrd_sac.PAPER_TASKS) == 8
  for task in mujoco_rrd_sac.PAPER_TASKS:
    config = loading.load_config("mujoco_rrd_sac", task)
    schema.validate(config)
    spec = gym.spec(config.env.name)
    assert config.env.name.endswith("-v5") and config.env.max_episode_steps == spec.max_episode_steps
    env = envs.make_env(config.env.name, config.env.max_episode_steps)
    observation, _ = env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert reward == 0.0 and not truncated  # the delayed reward comes at the end only
    del observation, terminated
    env.close()
    comparison = loading.load_config("mujoco_rrd_sac", f"{task}_comparison")
    assert comparison.env.name == config.env.name
    assert tuple(schema.reward_kinds(comparison)) == ("rrd", "ircr", "episodic", "dense")
    assert comparison.population.seeds == 3
