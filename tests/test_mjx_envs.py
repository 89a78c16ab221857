"""The MJX tasks (rrd_jax/rl/mjx_tasks.py, mjx_envs.py) against gymnasium v5's own environments.

Tolerances: the observation, reward and termination functions are evaluated in float32 on the
very MuJoCo states gymnasium produced (put_data of its MjData before and after each step), and
must agree with gymnasium's float64 values to a relative 1e-5 (|x - y| <= 1e-5 (1 + |y|)).
The MJX simulation itself (float32, MJX's solver) is compared over a few env steps from the same
start state with a looser 1e-3.
"""

import copy

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mujoco import mjx

from rrd_jax.config.schema import MUJOCO_ENVS
from rrd_jax.rl import envs, mjx_envs, mjx_tasks


def _close(ours, theirs, tolerance):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  assert ours.shape == theirs.shape
  error = np.max(np.abs(ours - theirs) / (1.0 + np.abs(theirs)))
  assert error <= tolerance, f"relative error {error:.3g} > {tolerance}"


def test_every_mujoco_task_has_an_mjx_version():
  assert set(mjx_tasks.MODELS) == set(MUJOCO_ENVS)


@pytest.mark.parametrize("name", MUJOCO_ENVS)
def test_observation_reward_and_termination_match_gymnasium_on_its_states(name):
  task = mjx_tasks.make_task(name, for_mjx=False)
  env = gym.make(name).unwrapped
  observation, _ = env.reset(seed=3)
  _close(task.observe(mjx.put_data(env.model, env.data)), observation, 1e-5)
  rng = np.random.default_rng(0)
  ended = 0
  for i in range(40):
    before = copy.copy(env.data)
    # Wide actions (twice the bounds, clipped by MuJoCo) so the walkers fall and terminate.
    action = rng.uniform(2 * env.action_space.low, 2 * env.action_space.high)
    observation, reward, terminated, _, _ = env.step(action)
    b, a = mjx.put_data(env.model, before), mjx.put_data(env.model, env.data)
    ctrl = jnp.asarray(env.data.ctrl, jnp.float32)
    _close(task.observe(a), observation, 1e-5)
    _close(task.reward(b, a, ctrl), reward, 1e-5)
    assert bool(task.terminated(a)) == terminated, f"step {i}"
    if terminated:
      ended += 1
      env.reset(seed=i)
  if name in ("Hopper-v5", "Walker2d-v5"):
    assert ended, "the termination rule was never exercised"


@pytest.mark.parametrize("name", MUJOCO_ENVS)
def test_reset_distribution_and_observation_size(name):
  task = mjx_tasks.make_task(name)
  env = gym.make(name)
  keys = jax.random.split(jax.random.PRNGKey(0), 256)
  qpos, qvel = jax.vmap(task.reset)(keys)
  qpos0 = task.model.qpos0
  assert qpos.shape == (256, task.model.nq) and qvel.shape == (256, task.model.nv)
  spread = np.max(np.abs(np.asarray(qpos) - qpos0))
  if name == "Reacher-v5":  # the goal: uniform in the disk of radius 0.2; still
    goal = np.asarray(qpos[:, -2:])
    assert np.all(np.linalg.norm(goal, axis=-1) < 0.2) and np.all(np.asarray(qvel[:, -2:]) == 0)
    assert np.max(np.abs(np.asarray(qpos[:, :2]) - qpos0[:2])) <= 0.1
  else:
    scale = {"Hopper-v5": 5e-3, "Walker2d-v5": 5e-3, "Humanoid-v5": 1e-2,
             "HumanoidStandup-v5": 1e-2}.get(name, 0.1)
    assert 0.8 * scale < spread <= scale * (1 + 1e-6)
  batch = mjx_envs.EnvBatch(name, 10)
  assert batch.observation_size == env.observation_space.shape[0]
  assert batch.action_size == env.action_space.shape[0]


def test_humanoids_use_newton_under_mjx_and_keep_pgs_for_gymnasium():
  for name in ("Humanoid-v5", "HumanoidStandup-v5"):
    assert mjx_tasks.load_model(name, for_mjx=False).opt.solver == 0  # PGS, as gymnasium
    assert mjx_tasks.load_model(name).opt.solver == 2  # Newton
    mjx.put_model(mjx_tasks.load_model(name))  # MJX accepts it


def _from_gymnasium(batch, gym_env):
  """An EnvState of one env holding gymnasium's current MuJoCo state."""
  state = batch.reset(jax.random.split(jax.random.PRNGKey(0), 1))
  theirs = mjx.put_data(gym_env.unwrapped.model, gym_env.unwrapped.data)
  data = jax.tree.map(lambda ours, t: jnp.asarray(t, getattr(ours, "dtype", None))[None],
                      jax.tree.map(lambda x: x[0], state.data), theirs)
  observation = batch.task.observe(jax.tree.map(lambda x: x[0], data))
  return state.replace(data=data, observation=observation[None])


@pytest.mark.slow
def test_env_step_matches_gymnasium_and_keeps_the_episodic_semantics():
  """HalfCheetah from gymnasium's start state, a 5-step time limit: the same observations and
  dense rewards; reward 0 until the time-out, then the episode's dense sum; a time-out is done
  but not terminal; the env restarts from a fresh draw in the same step."""
  name, limit = "HalfCheetah-v5", 5
  batch = mjx_envs.EnvBatch(name, limit)
  theirs = envs.make_env(name, limit)
  observation, _ = theirs.reset(seed=1)
  state = _from_gymnasium(batch, theirs)
  _close(state.observation[0], observation, 1e-5)
  step = jax.jit(batch.step)
  rng = np.random.default_rng(0)
  dense_sum = 0.0
  for i in range(limit):
    action = rng.uniform(-1, 1, batch.action_size).astype(np.float32)
    observation, reward, terminated, truncated, info = theirs.step(action)
    state, transition = step(state, jnp.asarray(action[None]))
    t = jax.tree.map(lambda x: np.asarray(x[0]), transition)
    _close(t["next_observation"], observation, 1e-3)
    _close(t["dense_reward"], info["dense_reward"], 1e-3)
    _close(t["reward"], reward, 1e-3)
    dense_sum += float(t["dense_reward"])
    assert bool(t["done"]) == (terminated or truncated) == (i == limit - 1)
    assert t["terminal"] == 0.0 and t["step_in_episode"] == i
  assert t["reward"] == pytest.approx(dense_sum, rel=1e-5)
  assert int(state.steps[0]) == 0 and float(state.episode_return[0]) == 0.0
  assert not np.allclose(state.observation[0], t["next_observation"])  # the next episode's start


@pytest.mark.slow
def test_a_terminated_episode_is_terminal_and_restarts():
  """Hopper pushed over by full actions terminates before its time limit: terminal 1 on that
  step only, and the env restarts."""
  batch = mjx_envs.EnvBatch("Hopper-v5", 1000)
  state = jax.jit(batch.reset)(jax.random.split(jax.random.PRNGKey(0), 2))
  step = jax.jit(batch.step)
  actions = jnp.asarray([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
  terminal_steps = []
  for i in range(200):
    state, transition = step(state, actions)
    if bool(transition["done"][0]):
      terminal_steps.append(i)
      assert float(transition["terminal"][0]) == 1.0 and int(state.steps[0]) == 0
    else:
      assert float(transition["terminal"][0]) == 0.0 and float(transition["reward"][0]) == 0.0
  assert terminal_steps and terminal_steps[0] < 200


@pytest.mark.slow
def test_a_diverged_simulation_ends_as_a_terminal_without_nans():
  """A NaN velocity in one env: that env's step is terminal with a finite (zero) observation and
  reward, and it restarts; the other env steps on normally."""
  batch = mjx_envs.EnvBatch("Swimmer-v5", 1000)
  state = jax.jit(batch.reset)(jax.random.split(jax.random.PRNGKey(0), 2))
  state = state.replace(data=state.data.replace(qvel=state.data.qvel.at[0, 0].set(jnp.nan)))
  state, transition = jax.jit(batch.step)(state, jnp.zeros((2, batch.action_size)))
  t = jax.tree.map(np.asarray, transition)
  assert t["done"].tolist() == [True, False] and t["terminal"].tolist() == [1.0, 0.0]
  assert np.all(np.isfinite(t["next_observation"])) and np.all(np.isfinite(t["dense_reward"]))
  assert np.all(t["next_observation"][0] == 0) and t["dense_reward"][0] == 0
  assert np.all(np.isfinite(np.asarray(state.observation))) and int(state.steps[0]) == 0
