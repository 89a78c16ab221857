"""A headless LIBERO task env by suite name and task index, observed in the project's RLDS layout.

Runs in the environment that launch/libero_setup.sh creates. `configure()` (called on construction)
defaults MUJOCO_GL and PYOPENGL_PLATFORM to osmesa and LIBERO_CONFIG_PATH to that environment's
libero-config folder, before robosuite is first imported; every LIBERO / robosuite import is inside
a function, so this module imports with numpy alone.

    env = LiberoEnv("libero_10", 0, image_size=128)
    obs = env.reset(init_state=0)   # {"image", "wrist_image", "state", "joint_state"}
    obs, reward, done, info = env.step(action)   # OSC_POSE deltas (7,) in [-1, 1]
    env.check_success(); env.subgoal_status(); env.get_state(); env.set_state(flat); env.close()

fast_render (default): MSAA off (model.vis.quality.offsamples = 0) and the off-screen buffer at
the image size, the render context rebuilt; about 1.5x faster on CPUs, jaggier edges. Resets are
soft (hard_reset=False), so these settings survive them. cameras=False builds the env without
rendering (physics only; observations without images).
"""

import os
import sys

import numpy as np

from rrd_jax.sim import goals, observation

CONFIG_DIR = "libero-config"  # inside the environment's prefix (launch/libero_setup.sh)


def configure():
  """Defaults for headless rendering and LIBERO's config folder (set only where unset)."""
  os.environ.setdefault("MUJOCO_GL", "osmesa")
  os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
  config_dir = os.path.join(sys.prefix, CONFIG_DIR)
  if os.path.isfile(os.path.join(config_dir, "config.yaml")):
    os.environ.setdefault("LIBERO_CONFIG_PATH", config_dir)


def suite_names():
  """The names of LIBERO's benchmark suites (libero_10, libero_spatial, ...)."""
  configure()
  from libero.libero import benchmark  # pylint: disable=import-outside-toplevel
  return sorted(benchmark.get_benchmark_dict())


def load_task(suite, index):
  """(benchmark suite object, its Task `index`, the task's BDDL file path)."""
  configure()
  from libero.libero import benchmark, get_libero_path  # pylint: disable=import-outside-toplevel
  suites = benchmark.get_benchmark_dict()
  if suite.lower() not in suites:
    raise ValueError(f"unknown LIBERO suite {suite!r}; known: {', '.join(sorted(suites))}")
  bench = suites[suite.lower()]()
  if not 0 <= index < bench.n_tasks:
    raise ValueError(f"{suite} has tasks 0..{bench.n_tasks - 1}, not {index}")
  task = bench.get_task(index)
  bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
  return bench, task, bddl


def fast_renderer(sim, width, height):
  """MSAA off and the off-screen buffer at (width, height); rebuilds the render context."""
  context = sim._render_context_offscreen  # pylint: disable=protected-access
  if context is None:
    return
  context.gl_ctx.make_current()
  sim.model.vis.quality.offsamples = 0
  sim.model.vis.global_.offwidth = width
  sim.model.vis.global_.offheight = height
  context.con.free()
  context._set_mujoco_context_and_buffers()  # pylint: disable=protected-access


class LiberoEnv:
  """One LIBERO task at `image_size`² (both cameras), reset to a stored init state."""

  def __init__(self, suite="libero_10", task=0, image_size=128, fast_render=True, cameras=True,
               horizon=1000):
    """Builds the env (16-40 s on 2 CPU cores)."""
    self.bench, self.task, self.bddl = load_task(suite, task)
    from libero.libero.envs.env_wrapper import ControlEnv  # pylint: disable=import-outside-toplevel
    self.suite, self.task_index, self.image_size, self.cameras = suite, task, image_size, cameras
    self.env = ControlEnv(bddl_file_name=self.bddl, camera_heights=image_size,
                          camera_widths=image_size, has_renderer=False,
                          has_offscreen_renderer=cameras, use_camera_obs=cameras,
                          hard_reset=False, horizon=horizon)
    self.init_states = None
    self.raw = self.env.reset()
    self._fast = fast_render and cameras
    if self._fast:
      fast_renderer(self.env.sim, image_size, image_size)
    self.subgoals = goals.env_subgoals(self.env.env)

  @property
  def instruction(self):
    """The task's language instruction (from its BDDL file)."""
    return self.env.language_instruction

  @property
  def problem(self):
    """The robosuite problem env under LIBERO's wrapper (sim, _eval_predicate, object states)."""
    return self.env.env

  def num_init_states(self):
    """How many stored init states the task has."""
    return len(self._init_states())

  def _init_states(self):
    """The task's stored init states ([N, state size]), loaded once."""
    if self.init_states is None:
      self.init_states = np.asarray(self.bench.get_task_init_states(self.task_index))
    return self.init_states

  def observe(self, raw=None):
    """The RLDS observation of `raw` (default: the last raw obs)."""
    return observation.rlds_observation(self.raw if raw is None else raw, images=self.cameras)

  def reset(self, init_state=0):
    """Resets, sets stored init state `init_state`; returns the RLDS observation."""
    self.env.reset()
    self.raw = self.env.set_init_state(self._init_states()[init_state])
    return self.observe()

  def step(self, action):
    """One control step (20 Hz): (RLDS observation, reward, done, info)."""
    self.raw, reward, done, info = self.env.step(np.asarray(action, np.float64))
    return self.observe(), float(reward), bool(done), info

  def check_success(self):
    """Whether the task's goal holds now."""
    return bool(self.env.check_success())

  def subgoal_status(self):
    """[bool] per subgoal of the goal (goals.evaluate with the env's _eval_predicate)."""
    evaluate = self.problem._eval_predicate  # pylint: disable=protected-access
    return goals.evaluate(self.subgoals, evaluate)

  def get_state(self):
    """The flat MuJoCo state (time, qpos, qvel), as LIBERO's HDF5 `states` stores it."""
    return np.asarray(self.env.get_sim_state()).copy()

  def set_state(self, flat):
    """Sets a flat state from get_state; returns the RLDS observation rendered from it."""
    self.raw = self.env.regenerate_obs_from_state(np.asarray(flat, np.float64))
    return self.observe()

  def poses(self, names):
    """{"eef_pos", "gripper_qpos", "objects": {name: position (3,)}} for the named objects and
    regions (privileged state, for the scripted policy)."""
    states = self.problem.object_states_dict
    missing = [n for n in names if n not in states]
    if missing:
      raise KeyError(f"no object or region {missing} in {self.bddl}; known: {sorted(states)}")
    return {"eef_pos": np.asarray(self.raw["robot0_eef_pos"], np.float64).copy(),
            "gripper_qpos": np.asarray(self.raw["robot0_gripper_qpos"], np.float64).copy(),
            "objects": {n: np.asarray(states[n].get_geom_state()["pos"], np.float64).copy()
                        for n in names}}

  def object_names(self):
    """Every object and region name the scene's object states know."""
    return sorted(self.problem.object_states_dict)

  def close(self):
    """Frees the simulator and its render context."""
    if self.env is not None:
      self.env.close()
      self.env = None
