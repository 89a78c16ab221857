"""The paper's eight gymnasium v5 MuJoCo tasks as pure JAX functions of MJX data.

Each `Task` is built from the model file gymnasium itself loads (its assets directory) and copies
gymnasium v5's defaults: frame skip, the observation, the reward terms, the termination rule and
the reset distribution. Everything reads an `mjx.Data` as MuJoCo leaves it after gymnasium's
`do_simulation` (frame_skip mj_steps, then mj_rnePostConstraint), so fields computed at the start
of the last substep (xpos, xipos, cinert, cvel) are read at the same point as gymnasium reads them.
tests/test_mjx_envs.py checks observation, reward and termination against gymnasium's on the same
MuJoCo states.

One difference from gymnasium: Humanoid and HumanoidStandup's model files select the PGS solver,
which MJX does not implement; under MJX they use MuJoCo's Newton solver (`SOLVER_OVERRIDES`).
The observation and reward functions are unchanged; the simulated dynamics differ slightly.
"""

import dataclasses
import os
from typing import Callable

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

# gymnasium id -> (model file, frame skip) of gymnasium v5's defaults.
MODELS = {"Hopper-v5": ("hopper.xml", 4), "Walker2d-v5": ("walker2d_v5.xml", 4),
          "HalfCheetah-v5": ("half_cheetah.xml", 5), "Swimmer-v5": ("swimmer.xml", 4),
          "Reacher-v5": ("reacher.xml", 2), "Ant-v5": ("ant.xml", 5),
          "Humanoid-v5": ("humanoid.xml", 5), "HumanoidStandup-v5": ("humanoidstandup.xml", 5)}
SOLVER_OVERRIDES = {"Humanoid-v5": mujoco.mjtSolver.mjSOL_NEWTON,
                    "HumanoidStandup-v5": mujoco.mjtSolver.mjSOL_NEWTON}


@dataclasses.dataclass(frozen=True)
class Task:
  """One task: its MuJoCo model and its functions of MJX data.

  observe(d) -> [O]; reward(before, after, ctrl) -> []; terminated(d) -> [] bool;
  reset(key) -> (qpos [nq], qvel [nv]). `dt` is one env step's simulated time. contact_forces:
  the functions read cfrc_ext, which the env step then computes (mj_rnePostConstraint)."""
  name: str
  model: mujoco.MjModel
  frame_skip: int
  observe: Callable
  reward: Callable
  terminated: Callable
  reset: Callable
  contact_forces: bool = False

  @property
  def dt(self):
    return self.model.opt.timestep * self.frame_skip


def model_path(name):
  import gymnasium  # pylint: disable=import-outside-toplevel
  assets = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")
  return os.path.join(assets, MODELS[name][0])


def load_model(name, for_mjx=True):
  """The MjModel gymnasium builds for `name` (with the MJX solver override when for_mjx)."""
  model = mujoco.MjModel.from_xml_path(model_path(name))
  if for_mjx and name in SOLVER_OVERRIDES:
    model.opt.solver = SOLVER_OVERRIDES[name]
  return model


def _impl(d, field):
  """A field MJX keeps in its JAX-implementation part (cinert, cfrc_ext), where it does."""
  impl = getattr(d, "_impl", None)
  return getattr(impl, field) if impl is not None and hasattr(impl, field) else getattr(d, field)


def _ctrl_cost(weight):
  return lambda ctrl: weight * jnp.sum(jnp.square(ctrl))


def _uniform_reset(model, scale, normal_velocity=False):
  """qpos0 + U(-scale, scale); qvel U(-scale, scale), or scale * N(0, 1)."""
  qpos0 = jnp.asarray(model.qpos0, jnp.float32)

  def reset(key):
    key_pos, key_vel = jax.random.split(key)
    qpos = qpos0 + jax.random.uniform(key_pos, (model.nq,), minval=-scale, maxval=scale)
    if normal_velocity:
      qvel = scale * jax.random.normal(key_vel, (model.nv,))
    else:
      qvel = jax.random.uniform(key_vel, (model.nv,), minval=-scale, maxval=scale)
    return qpos, qvel

  return reset


def _planar_walker(name, model, frame_skip, healthy):
  """Hopper and Walker2d: forward velocity + 1 while healthy - 1e-3 |a|^2; ends when unhealthy."""
  dt = model.opt.timestep * frame_skip
  cost = _ctrl_cost(1e-3)
  return Task(
      name, model, frame_skip,
      observe=lambda d: jnp.concatenate([d.qpos[1:], jnp.clip(d.qvel, -10.0, 10.0)]),
      reward=lambda b, a, ctrl: ((a.qpos[0] - b.qpos[0]) / dt + healthy(a).astype(jnp.float32)
                                 - cost(ctrl)),
      terminated=lambda d: ~healthy(d), reset=_uniform_reset(model, 5e-3))


def _hopper_healthy(d):
  state = jnp.concatenate([d.qpos, d.qvel])[2:]
  z, angle = d.qpos[1], d.qpos[2]
  return jnp.all((state > -100.0) & (state < 100.0)) & (z > 0.7) & (angle > -0.2) & (angle < 0.2)


def _walker_healthy(d):
  z, angle = d.qpos[1], d.qpos[2]
  return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)


def _runner(name, model, frame_skip, ctrl_weight, skip, normal_velocity):
  """HalfCheetah and Swimmer: forward (x) velocity - ctrl cost; never terminate."""
  dt = model.opt.timestep * frame_skip
  cost = _ctrl_cost(ctrl_weight)
  return Task(
      name, model, frame_skip,
      observe=lambda d: jnp.concatenate([d.qpos[skip:], d.qvel]),
      reward=lambda b, a, ctrl: (a.qpos[0] - b.qpos[0]) / dt - cost(ctrl),
      terminated=lambda d: jnp.asarray(False), reset=_uniform_reset(model, 0.1, normal_velocity))


def _reacher(name, model, frame_skip):
  fingertip = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "fingertip")
  target = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "target")
  qpos0 = jnp.asarray(model.qpos0, jnp.float32)
  cost = _ctrl_cost(1.0)

  def observe(d):
    theta = d.qpos[:2]
    return jnp.concatenate([jnp.cos(theta), jnp.sin(theta), d.qpos[2:], d.qvel[:2],
                            (d.xpos[fingertip] - d.xpos[target])[:2]])

  def reset(key):
    """gymnasium's rejection sampling of the goal (uniform in the square until inside the disk
    of radius 0.2), as the first of 32 candidates inside it (all 32 outside: p < 1e-20)."""
    key_pos, key_goal, key_vel = jax.random.split(key, 3)
    qpos = qpos0 + jax.random.uniform(key_pos, (model.nq,), minval=-0.1, maxval=0.1)
    goals = jax.random.uniform(key_goal, (32, 2), minval=-0.2, maxval=0.2)
    goal = goals[jnp.argmax(jnp.linalg.norm(goals, axis=-1) < 0.2)]
    qvel = jax.random.uniform(key_vel, (model.nv,), minval=-0.005, maxval=0.005)
    return qpos.at[-2:].set(goal), qvel.at[-2:].set(0.0)

  return Task(name, model, frame_skip, observe=observe,
              reward=lambda b, a, ctrl: (-jnp.linalg.norm(a.xpos[fingertip] - a.xpos[target])
                                         - cost(ctrl)),
              terminated=lambda d: jnp.asarray(False), reset=reset)


def _ant(name, model, frame_skip):
  dt = model.opt.timestep * frame_skip
  cost = _ctrl_cost(0.5)
  contact = lambda d: jnp.clip(_impl(d, "cfrc_ext"), -1.0, 1.0)  # noqa: E731

  def healthy(d):
    state = jnp.concatenate([d.qpos, d.qvel])
    return jnp.all(jnp.isfinite(state)) & (d.qpos[2] >= 0.2) & (d.qpos[2] <= 1.0)

  def reward(b, a, ctrl):
    forward = (a.xpos[1, 0] - b.xpos[1, 0]) / dt  # the torso (body 1)
    return (forward + healthy(a).astype(jnp.float32) - cost(ctrl)
            - 5e-4 * jnp.sum(jnp.square(contact(a))))

  return Task(name, model, frame_skip,
              observe=lambda d: jnp.concatenate([d.qpos[2:], d.qvel, contact(d)[1:].ravel()]),
              reward=reward, terminated=lambda d: ~healthy(d),
              reset=_uniform_reset(model, 0.1, normal_velocity=True), contact_forces=True)


def _humanoid_observe(d):
  return jnp.concatenate([d.qpos[2:], d.qvel, _impl(d, "cinert")[1:].ravel(),
                          d.cvel[1:].ravel(), d.qfrc_actuator[6:],
                          _impl(d, "cfrc_ext")[1:].ravel()])


def _humanoid(name, model, frame_skip):
  dt = model.opt.timestep * frame_skip
  mass = jnp.asarray(model.body_mass, jnp.float32)
  centre_x = lambda d: jnp.dot(mass, d.xipos[:, 0]) / jnp.sum(mass)  # noqa: E731
  healthy = lambda d: (d.qpos[2] > 1.0) & (d.qpos[2] < 2.0)  # noqa: E731
  cost = _ctrl_cost(0.1)

  def reward(b, a, ctrl):
    contact = jnp.minimum(5e-7 * jnp.sum(jnp.square(_impl(a, "cfrc_ext"))), 10.0)
    return (1.25 * (centre_x(a) - centre_x(b)) / dt + 5.0 * healthy(a).astype(jnp.float32)
            - cost(ctrl) - contact)

  return Task(name, model, frame_skip, observe=_humanoid_observe, reward=reward,
              terminated=lambda d: ~healthy(d), reset=_uniform_reset(model, 1e-2),
              contact_forces=True)


def _humanoid_standup(name, model, frame_skip):
  timestep = model.opt.timestep
  cost = _ctrl_cost(0.1)

  def reward(b, a, ctrl):
    del b
    impact = jnp.minimum(0.5e-6 * jnp.sum(jnp.square(_impl(a, "cfrc_ext"))), 10.0)
    return a.qpos[2] / timestep - cost(ctrl) - impact + 1.0

  return Task(name, model, frame_skip, observe=_humanoid_observe, reward=reward,
              terminated=lambda d: jnp.asarray(False), reset=_uniform_reset(model, 1e-2),
              contact_forces=True)


def make_task(name, for_mjx=True):
  """The Task of gymnasium id `name` (one of MODELS)."""
  model = load_model(name, for_mjx)
  frame_skip = MODELS[name][1]
  builders = {
      "Hopper-v5": lambda: _planar_walker(name, model, frame_skip, _hopper_healthy),
      "Walker2d-v5": lambda: _planar_walker(name, model, frame_skip, _walker_healthy),
      "HalfCheetah-v5": lambda: _runner(name, model, frame_skip, 0.1, 1, True),
      "Swimmer-v5": lambda: _runner(name, model, frame_skip, 1e-4, 2, False),
      "Reacher-v5": lambda: _reacher(name, model, frame_skip),
      "Ant-v5": lambda: _ant(name, model, frame_skip),
      "Humanoid-v5": lambda: _humanoid(name, model, frame_skip),
      "HumanoidStandup-v5": lambda: _humanoid_standup(name, model, frame_skip),
  }
  return builders[name]()


def action_bounds(model):
  """(low [A], high [A]) of gymnasium's action space: the actuators' ctrlrange."""
  bounds = np.asarray(model.actuator_ctrlrange, np.float32)
  return bounds[:, 0], bounds[:, 1]
