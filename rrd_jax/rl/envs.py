"""Episodic-reward environments (docs/ALGORITHM.md, "The full agent (RRD-SAC)") and a batch of them.

`EpisodicReward` hides the per-step reward: every step returns 0 except the episode's last, which
returns the episode's summed reward. The true per-step reward stays in info["dense_reward"] (the
`dense` oracle and evaluation read it). The time limit (env.max_episode_steps, 1000 for MuJoCo) ends
an episode with truncated=True, terminated=False: a time-out is not a terminal, SAC bootstraps
through it. Actions are rescaled so the agent always acts in [-1, 1]^A.
"""

import dataclasses
import functools
import signal

import gymnasium as gym
import numpy as np

from rrd_jax.config.schema import ENV_NAMES
from rrd_jax.util.errors import UserError



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
  """One finished episode's transitions, [T, ...] arrays, and the index of the env that ran it."""
  observation: np.ndarray
  action: np.ndarray
  next_observation: np.ndarray
  reward: np.ndarray  # the environment's (delayed) reward: 0 ... 0, R
  dense_reward: np.ndarray  # the true per-step reward (oracle / evaluation only)
  terminal: np.ndarray  # 1.0 on a true terminal (not on a time-out)
  env_index: int = 0  # which of the EnvBatch's environments ran it

  def __len__(self):
    return len(self.reward)

  @property
  def episode_return(self):
    return float(np.sum(self.dense_reward))


def _make_worker_env(name, max_episode_steps):
  """make_env inside an AsyncVectorEnv worker, which ignores SIGINT and SIGTERM: a Ctrl-C (sent to
  the whole process group) or a SIGTERM stops the training process, which saves and then closes
  its workers (rrd_jax/run/interrupt.py), instead of killing the workers under it."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  return make_env(name, max_episode_steps)


class EnvBatch:
  """Environments stepped together (a gymnasium vector env); each restarts when its episode ends.

  One environment per seed in `seeds`. With subprocesses=True each steps in its own process
  (gymnasium's AsyncVectorEnv, started with "spawn": safe after JAX has started threads), which
  pays off for many environments on a many-core machine; otherwise all step in this process.
  Transitions of running episodes are kept here and handed out as an `Episode` only when the
  episode has finished, so the replay buffer only ever holds whole episodes (as the reference does).
  Random (warm-up) actions come from one generator per environment, seeded by its seed.
  """

  def __init__(self, name, max_episode_steps, seeds, subprocesses=False):
    check_env_name(name)
    same_step = gym.vector.AutoresetMode.SAME_STEP
    if subprocesses:
      make = functools.partial(_make_worker_env, name, max_episode_steps)
      self.vector = gym.vector.AsyncVectorEnv([make] * len(seeds), autoreset_mode=same_step,
                                              context="spawn")
    else:
      make = functools.partial(make_env, name, max_episode_steps)
      self.vector = gym.vector.SyncVectorEnv([make] * len(seeds), autoreset_mode=same_step)
    self.action_size = int(np.prod(self.vector.single_action_space.shape))
    self.reset(seeds)

  def __len__(self):
    return self.vector.num_envs

  def reset(self, seeds):
    """Restarts every environment (seeded) and drops the running episodes."""
    observations, _ = self.vector.reset(seed=[int(s) for s in seeds])
    self.observations = np.asarray(observations, np.float32)  # [E, O]
    self._rngs = [np.random.default_rng(int(s)) for s in seeds]
    self._running = [[] for _ in seeds]

  def random_actions(self):
    return np.stack([rng.uniform(-1.0, 1.0, self.action_size) for rng in self._rngs]
                    ).astype(np.float32)

  def step(self, actions):
    """Steps every env with actions [E, A]; returns (list of episodes that finished, true
    per-step rewards [E], done [E])."""
    actions = np.asarray(actions, np.float32)
    observations, rewards, terminated, truncated, info = self.vector.step(actions)
    observations = np.asarray(observations, np.float32)
    done = np.logical_or(terminated, truncated)
    dense = np.asarray(info.get("dense_reward", np.zeros(len(self))), np.float64).copy()
    next_observations = observations.copy()
    if done.any():
      final_info = info["final_info"]
      for i in np.flatnonzero(done):
        next_observations[i] = info["final_obs"][i]
        dense[i] = final_info["dense_reward"][i]
    finished = []
    for i in range(len(self)):
      self._running[i].append((self.observations[i], actions[i], next_observations[i],
                               float(rewards[i]), float(dense[i]), float(terminated[i])))
      if done[i]:
        finished.append(_to_episode(self._running[i], i))
        self._running[i] = []
    self.observations = observations
    return finished, dense, done

  def close(self):
    self.vector.close()


def _to_episode(steps, env_index):
  columns = list(zip(*steps))
  return Episode(observation=np.stack(columns[0]), action=np.stack(columns[1]),
                 next_observation=np.stack(columns[2]),
                 reward=np.asarray(columns[3], np.float32),
                 dense_reward=np.asarray(columns[4], np.float32),
                 terminal=np.asarray(columns[5], np.float32), env_index=env_index)


def evaluate(batch, policy, seeds):
  """True (dense) return of one episode per environment of `batch` (reset with `seeds`), all run
  side by side under `policy` ([E, O] -> [E, A]): [E]."""
  batch.reset(seeds)
  returns = np.zeros(len(batch))
  active = np.ones(len(batch), bool)
  while active.any():
    _, dense, done = batch.step(policy(batch.observations))
    returns += np.where(active, dense, 0.0)
    active &= ~done
  return returns
