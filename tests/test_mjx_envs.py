"""The MJX tasks (rrd_jax/rl/mjx_tasks.py, mjx_envs.py) against gymnasium v5's own environments.

Tolerances: the observation, reward and termination functions are evaluated in float32 on the
very MuJoCo states gymnasium produced (put_data of its MjData before and after each step), and
must agree with gymnasium's float64 values to a relative 1e-5 (|x - y| <= 1e-5 (1 + |y|)).
The MJX simulation itself (float32, MJX's solver) is compared over whole episodes (HalfCheetah's
100 steps, Hopper's until it falls): one env free-running from gymnasium's start state, under a
bound that grows with the chaos of the trajectory, and one put back onto gymnasium's state before
every step, under a fixed 3e-4 (see FREE_TOLERANCE below); Hopper must terminate on gymnasium's
very step.
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


def _set_from_gymnasium(state, index, gym_env, observation):
  """`state` (EnvState of N envs) with env `index` holding gymnasium's current MuJoCo state and
  `observation`; its step counter and running return are kept. Every leaf comes back as a NumPy
  array, so the jitted step sees the same kind of input on every call (one compile)."""
  theirs = mjx.put_data(gym_env.unwrapped.model, gym_env.unwrapped.data)

  def put(ours, t):
    ours = np.array(ours)
    ours[index] = np.asarray(t, ours.dtype)
    return ours

  state = jax.tree.map(np.array, state)
  return state.replace(data=jax.tree.map(put, state.data, theirs),
                       observation=put(state.observation, observation))


def _gymnasium_start(batch, gym_env, observation, num_envs):
  """An EnvState of `num_envs` envs, each holding gymnasium's current state (built without
  running the reset: an eager MJX reset costs half a minute here)."""
  keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
  state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(batch.reset, keys))
  state = state.replace(key=np.asarray(keys))
  for index in range(num_envs):
    state = _set_from_gymnasium(state, index, gym_env, observation)
  return state


# MJX in float32 against MuJoCo in float64 (gymnasium) over a long horizon. Run in float64
# (jax_enable_x64), MJX follows gymnasium's HalfCheetah under random actions to 1e-16 at the first
# step, and the difference then roughly doubles every env step (1e-8 by step ~30, 1e-2 by step
# ~70): the dynamics are the same, the trajectory is chaotic (contacts). In float32 the rounding
# (~1e-7 .. 1e-6 after the first step) grows the same way (measured: 4e-7 at step 0, 1e-4 by
# step 8, 1e-3 by step 10, 1e-1 by step 15, O(1) from step ~20). Hence two checks:
# - the free-running env is compared step by step under the growing bound FREE_TOLERANCE * 2^i,
#   >= 8x the measured error, as long as that bound is below 0.1 (the first 14 steps), and
# - a second env is put back onto gymnasium's state before every step, so each of the horizon's
#   steps compares ONE env step from the same state: no chaos, float32 rounding only (measured
#   worst over 100 HalfCheetah steps 4.4e-5, Hopper 5e-6), at ONE_STEP_TOLERANCE.
FREE_TOLERANCE = 1e-5
ONE_STEP_TOLERANCE = 3e-4


def _free_tolerance(step):
  """The free-running env's bound at env step `step`, or None once it passes 0.1."""
  bound = FREE_TOLERANCE * 2.0 ** step
  return bound if bound <= 0.1 else None


def _run_against_gymnasium(name, limit, seed, check_step):
  """Steps gymnasium's `name` (time limit `limit`, reset(seed=1)) with uniform random actions
  (rng `seed`) until its episode ends, and alongside it, in one jitted MJX step, env 0 free-running
  from gymnasium's start state and env 1 put back onto gymnasium's state before every step.
  Compares each step's next observation, dense and episodic reward (env 0 under _free_tolerance,
  env 1 under ONE_STEP_TOLERANCE); check_step(i, transition, gymnasium's step output) checks the
  rest. Returns (steps taken, last transition, state after it)."""
  batch = mjx_envs.EnvBatch(name, limit)
  theirs = envs.make_env(name, limit)
  observation, _ = theirs.reset(seed=1)
  state = _gymnasium_start(batch, theirs, observation, 2)
  step = jax.jit(batch.step)
  rng = np.random.default_rng(seed)
  for i in range(limit):
    action = rng.uniform(-1, 1, batch.action_size).astype(np.float32)
    state = _set_from_gymnasium(state, 1, theirs, observation)
    observation, reward, terminated, truncated, info = theirs.step(action)
    state, transition = step(state, jnp.asarray(np.stack([action, action])))
    t = jax.tree.map(np.asarray, transition)
    for env, tolerance in ((0, _free_tolerance(i)), (1, ONE_STEP_TOLERANCE)):
      if tolerance is not None:
        _close(t["next_observation"][env], observation, tolerance)
        _close(t["dense_reward"][env], info["dense_reward"], tolerance)
    _close(t["reward"][1], reward, ONE_STEP_TOLERANCE)  # 0, or the episode's dense sum
    check_step(i, t, (terminated, truncated))
    if terminated or truncated:
      return i + 1, t, state
  raise AssertionError(f"gymnasium's {name} episode did not end within {limit} steps")


@pytest.mark.slow
def test_env_step_matches_gymnasium_over_an_episode_and_keeps_the_episodic_semantics():
  """HalfCheetah for a whole 100-step episode (time limit 100) from gymnasium's start state:
  the same observations and dense rewards (free-running for the first steps, from gymnasium's
  state at every step: see above); reward 0 until the time-out, then the episode's dense sum;
  a time-out is done but not terminal; the env restarts from a fresh draw in the same step."""
  limit = 100

  def check_step(i, t, gym_end):
    assert t["done"].tolist() == [any(gym_end)] * 2 == [i == limit - 1] * 2, f"step {i}"
    assert t["terminal"].tolist() == [0.0, 0.0] and t["step_in_episode"].tolist() == [i, i]
    if i < limit - 1:
      assert t["reward"].tolist() == [0.0, 0.0]

  steps, t, state = _run_against_gymnasium("HalfCheetah-v5", limit, 0, check_step)
  assert steps == limit
  np.testing.assert_allclose(t["reward"], t["episode_return"], rtol=1e-6)  # the dense sums
  assert state.steps.tolist() == [0, 0] and state.episode_return.tolist() == [0.0, 0.0]
  assert not np.allclose(state.observation[0], t["next_observation"][0])  # the next episode's


def _hopper_health_margin(gym_env):
  """How far gymnasium's Hopper state is from the nearest bound of its own health rule."""
  env = gym_env.unwrapped
  z, angle = env.data.qpos[1:3]
  state = env.state_vector()[2:]
  (s_low, s_high), (z_low, z_high) = env._healthy_state_range, env._healthy_z_range  # noqa: SLF001
  a_low, a_high = env._healthy_angle_range  # noqa: SLF001
  return np.min(np.abs(np.concatenate([state - s_low, s_high - state,
                                       [z - z_low, z_high - z, angle - a_low, a_high - angle]])))


@pytest.mark.slow
def test_a_terminated_episode_ends_at_gymnasiums_step_and_restarts():
  """Hopper from gymnasium's start state under random actions falls over (its torso angle
  leaves [-0.2, 0.2]) on gymnasium's step 26 of 1000; both MJX envs (free-running and
  resynchronised) terminate on that same step: done and terminal 1 there only, reward 0 before,
  then the episode's dense sum, and the env restarts. Gymnasium's state stays >= 1e-4 from its
  health bounds on every step (8.8e-4 at step 25), far beyond the float32 error (~5e-6), so the
  same step is what a faithful simulation must give."""
  ends = []

  def check_step(i, t, gym_end):
    terminated, truncated = gym_end
    assert not truncated
    assert t["done"].tolist() == t["terminal"].astype(bool).tolist() == [terminated] * 2, i
    if not terminated:
      assert t["reward"].tolist() == [0.0, 0.0]
    else:
      ends.append(i)

  theirs_margin = []
  original_step = gym.wrappers.RescaleAction.step

  def recording_step(self, action):  # gymnasium's own margin to its health bounds, every step
    out = original_step(self, action)
    theirs_margin.append(_hopper_health_margin(self))
    return out

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(gym.wrappers.RescaleAction, "step", recording_step)
    steps, t, state = _run_against_gymnasium("Hopper-v5", 1000, 0, check_step)
  assert ends == [steps - 1] == [26]
  assert min(theirs_margin) > 1e-4, min(theirs_margin)
  np.testing.assert_allclose(t["reward"], t["episode_return"], rtol=1e-6)
  assert state.steps.tolist() == [0, 0] and state.episode_return.tolist() == [0.0, 0.0]


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
