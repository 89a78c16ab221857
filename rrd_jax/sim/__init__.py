"""Layer 8, sim: the real LIBERO simulator headless (robosuite, MuJoCo), and scripted rollouts.

Runs in the second environment that launch/libero_setup.sh creates (LIBERO cannot share the main
one's mujoco and numpy); every module here imports with numpy alone, LIBERO and robosuite only
inside the functions that use them.

observation.py  the raw robosuite observation -> the project's RLDS layout (and LIBERO's HDF5 one)
libero_env.py   a headless LIBERO task env by suite and task index: reset, step, success, sim state
goals.py        a task's goal as subgoals (predicate, args), classified and evaluated
scripted.py     a privileged scripted pick-and-place policy driven by the goal, with failure modes
rollout.py      one scripted episode in a LIBERO env, timed (python -m rrd_jax.sim.rollout)
"""
