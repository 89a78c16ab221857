"""One scripted episode in a LIBERO env, timed: the evidence that the scripted policy solves a task.

python -m rrd_jax.sim.rollout --suite libero_10 --task 0 --image_size 128 [--no_cameras]
    [--init_state 0] [--max_steps 600] [--noise 0] [--failure_prob 0] [--seed 0]

Prints one JSON line per episode: success, the first step at which check_success held, the
subgoals' status at the end, the spec (noise, failure mode), steps and env steps/s (stepping only;
building and resetting the env are timed apart). Run it with the LIBERO environment's python.
"""

import argparse
import json
import time

import numpy as np

from rrd_jax.sim import goals, scripted


def run_episode(env, policy, max_steps=600, init_state=0, stop_on_success=True):
  """Resets `env` to `init_state` and steps `policy` until success (if stop_on_success), the
  policy is done, or max_steps; returns a summary dict."""
  start = time.perf_counter()
  env.reset(init_state)
  reset_s = time.perf_counter() - start
  names, first_success, steps = policy.names(), None, 0
  start = time.perf_counter()
  for steps in range(1, max_steps + 1):
    env.step(policy.act(env.poses(names)))
    if first_success is None and env.check_success():
      first_success = steps
      if stop_on_success:
        break
    if policy.done:
      break
  seconds = time.perf_counter() - start
  return {"success": env.check_success(), "first_success_step": first_success, "steps": steps,
          "subgoals": [" ".join(s.as_list()) for s in env.subgoals],
          "subgoal_status": env.subgoal_status(), "final_phase": policy.progress.phase,
          "step_seconds": round(seconds, 2), "steps_per_s": round(steps / max(seconds, 1e-9), 2),
          "reset_seconds": round(reset_s, 2)}


def candidates(env):
  """Placement targets a wrong_target failure may pick: the scene's regions and objects that no
  subgoal moves and that are not the goal's targets."""
  used = {n for s in env.subgoals for n in s.args}
  return [n for n in env.object_names() if n not in used]


def _args(argv):
  """The command line."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--suite", default="libero_10")
  parser.add_argument("--task", type=int, default=0)
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--no_cameras", action="store_true", help="physics only, no rendering")
  parser.add_argument("--init_state", type=int, default=0)
  parser.add_argument("--episodes", type=int, default=1)
  parser.add_argument("--max_steps", type=int, default=600)
  parser.add_argument("--noise", type=float, default=0.0)
  parser.add_argument("--failure_prob", type=float, default=0.0)
  parser.add_argument("--seed", type=int, default=0)
  return parser.parse_args(argv)


def main(argv=None):
  """Builds the env once and runs --episodes scripted episodes, one JSON line each."""
  from rrd_jax.sim import libero_env  # pylint: disable=import-outside-toplevel
  args = _args(argv)
  start = time.perf_counter()
  env = libero_env.LiberoEnv(args.suite, args.task, args.image_size, cameras=not args.no_cameras)
  build_s = time.perf_counter() - start
  print(json.dumps({"suite": args.suite, "task": args.task, "instruction": env.instruction,
                    "placements_only": goals.placements_only(env.subgoals),
                    "build_seconds": round(build_s, 1)}), flush=True)
  rng = np.random.default_rng(args.seed)
  try:
    for episode in range(args.episodes):
      placements = sum(s.kind == goals.PLACEMENT for s in env.subgoals)
      spec = scripted.sample_spec(rng, placements, args.noise, args.failure_prob,
                                  candidates=candidates(env))
      policy = scripted.ScriptedPolicy(env.subgoals, spec, seed=args.seed * 1000 + episode)
      init = (args.init_state + episode) % env.num_init_states()
      summary = run_episode(env, policy, args.max_steps, init)
      print(json.dumps({"episode": episode, "init_state": init, "spec": vars(spec), **summary}),
            flush=True)
  finally:
    env.close()


if __name__ == "__main__":
  main()
