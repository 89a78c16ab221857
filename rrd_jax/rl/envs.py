"""Episodic-reward environments (RRD_REFERENCE.md, "The full agent") and a batch of them.

`EpisodicReward` hides the per-step reward: every step returns 0 except the episode's last, which
returns the episode's summed reward. The true per-step reward stays in info["dense_reward"] (the
`dense` oracle and evaluation read it). The time limit (env.max_episode_steps, 1000 for MuJoCo) ends
an episode with truncated=True, terminated=False: a time-out is not a terminal, SAC bootstraps
through it. Actions are rescaled so the agent always acts in [-1, 1]^A.
"""

import dataclasses

import gymnasium as gym
import numpy as np

from rrd_jax.errors import UserError

MUJOCO_ENVS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5")
TEST_ENVS = ("Pendulum-v1",)  # cheap, for tests and smoke runs
ENV_NAMES = MUJOCO_ENVS + TEST_ENVS


class EpisodicReward(gym.Wrapper):
  """Reward 0 on every step but the last, which carries the episode's return."""

  def __init__(self, env):
    super().__init__(env)
    self._episode_return = 0.0

  def reset(self, **kwargs):
    self._episode_return = 0.0
    return self.env.reset(**kwargs)

  def step(self, action):
    observation, reward, terminated, truncated, info = self.env.step(action)
    info = dict(info, dense_reward=float(reward))
    self._episode_return += float(reward)
    delayed = self._episode_return if (terminated or truncated) else 0.0
    return observation, delayed, terminated, truncated, info


def check_env_name(name):
  if name not in ENV_NAMES:
    raise UserError(f"env.name must be one of {', '.join(ENV_NAMES)}, got {name!r}")


def make_env(name, max_episode_steps):
  """name's environment: time limit, actions in [-1, 1], episodic reward."""
  check_env_name(name)
  env = gym.make(name, max_episode_steps=max_episode_steps)
  bound = np.ones(env.action_space.shape, np.float32)
  env = gym.wrappers.RescaleAction(env, -bound, bound)
  return EpisodicReward(env)


def env_dims(name):
  """(observation size, action size) of `name`."""
  env = make_env(name, 1)
  dims = (int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape)))
  env.close()
  return dims


@dataclasses.dataclass
class Episode:
  """One finished episode's transitions, [T, ...] arrays."""
  observation: np.ndarray
  action: np.ndarray
  next_observation: np.ndarray
  reward: np.ndarray  # the environment's (delayed) reward: 0 ... 0, R
  dense_reward: np.ndarray  # the true per-step reward (oracle / evaluation only)
  terminal: np.ndarray  # 1.0 on a true terminal (not on a time-out)

  def __len__(self):
    return len(self.reward)

  @property
  def episode_return(self):
    return float(np.sum(self.dense_reward))


class EnvBatch:
  """`num_envs` environments stepped together; each restarts when its episode ends.

  Transitions of running episodes are kept here and handed out as an `Episode` only when the
  episode has finished, so the replay buffer only ever holds whole episodes (as the reference does).
  """

  def __init__(self, name, num_envs, max_episode_steps, seed):
    self.envs = [make_env(name, max_episode_steps) for _ in range(num_envs)]
    self.observations = np.stack([env.reset(seed=seed + i)[0] for i, env in
                                  enumerate(self.envs)]).astype(np.float32)  # [E, O]
    for i, env in enumerate(self.envs):
      env.action_space.seed(seed + i)
    self._running = [[] for _ in self.envs]

  def random_actions(self):
    return np.stack([env.action_space.sample() for env in self.envs]).astype(np.float32)

  def step(self, actions):
    """Steps every env with actions [E, A]; returns the list of episodes that finished."""
    finished = []
    for i, env in enumerate(self.envs):
      next_observation, reward, terminated, truncated, info = env.step(actions[i])
      next_observation = np.asarray(next_observation, np.float32)
      self._running[i].append((self.observations[i].copy(), actions[i], next_observation, reward,
                               info["dense_reward"], float(terminated)))
      if terminated or truncated:
        finished.append(_to_episode(self._running[i]))
        self._running[i] = []
        next_observation = np.asarray(env.reset()[0], np.float32)
      self.observations[i] = next_observation
    return finished

  def close(self):
    for env in self.envs:
      env.close()


def _to_episode(steps):
  columns = list(zip(*steps))
  return Episode(observation=np.stack(columns[0]), action=np.stack(columns[1]),
                 next_observation=np.stack(columns[2]),
                 reward=np.asarray(columns[3], np.float32),
                 dense_reward=np.asarray(columns[4], np.float32),
                 terminal=np.asarray(columns[5], np.float32))


def evaluate(name, max_episode_steps, policy, num_episodes, seed):
  """Mean true (dense) return of `policy` ([E, O] -> [E, A]) over num_episodes run side by side."""
  envs = EnvBatch(name, num_episodes, max_episode_steps, seed)
  returns = np.zeros(num_episodes)
  active = np.ones(num_episodes, bool)
  while active.any():
    actions = policy(envs.observations)
    for i, env in enumerate(envs.envs):
      if not active[i]:
        continue
      observation, _, terminated, truncated, info = env.step(actions[i])
      returns[i] += info["dense_reward"]
      envs.observations[i] = observation
      active[i] = not (terminated or truncated)
  envs.close()
  return returns
