"""A privileged scripted pick-and-place policy for LIBERO, driven by the parsed goal (no task code).

For each placement subgoal (goals.PLACEMENT: In / On) in order it runs the phases
  approach  above the object                 gripper open
  descend   to the object's position         open
  grasp     hold still, closing              closed, for `grip_steps`
  lift      straight up from the grasp point closed
  carry     over the target at lift height   closed
  lower     to the release height above it   closed
  release   hold still, opening              open, for `grip_steps`
  retreat   straight up                      open
with a proportional controller on the eef position (OSC_POSE deltas, clipped to [-1, 1]; the
rotation part is 0). While the object is in hand, carry and lower aim the object, not the eef, at
the target (`held_offset`). A motion phase ends when the eef is within `tol` of its target point
or after `phase_timeout` steps. Which phase comes next, which point it aims at and which action it
sends are pure functions of the poses (object and eef positions) and the progress so far
(`plan_step`; the gripper is commanded open-loop by phase), so they are testable without a
simulator.

An episode's EpisodeSpec, drawn by `sample_spec` from a seeded RNG, sets action jitter and at most
one failure mode on one subgoal, each with a graded magnitude:
  jitter         extra Gaussian noise on the motion part of every action (sigma `amount`)
  missed_grasp   closes `amount` metres above the grasp point
  early_release  opens `amount` steps into the carry
  wrong_target   places the object on / in `wrong_target` instead of the goal's target
  timeout        stalls (zero motion, gripper held) from phase index `amount` on (sampled before
                 the release, so the object is never let go)
"""

import dataclasses

import numpy as np

from rrd_jax.sim import goals

APPROACH, DESCEND, GRASP, LIFT, CARRY, LOWER, RELEASE, RETREAT, DONE = (
    "approach", "descend", "grasp", "lift", "carry", "lower", "release", "retreat", "done")
PHASES = (APPROACH, DESCEND, GRASP, LIFT, CARRY, LOWER, RELEASE, RETREAT)
GRIP_PHASES = (GRASP, RELEASE)
CLOSED_PHASES = (GRASP, LIFT, CARRY, LOWER)
OPEN, CLOSE = -1.0, 1.0
FAILURE_MODES = ("jitter", "missed_grasp", "early_release", "wrong_target", "timeout")


@dataclasses.dataclass(frozen=True)
class Params:
  """The controller's geometry (metres) and timing (steps)."""
  above: float = 0.10  # approach height above the object
  grasp_dz: float = 0.0  # grasp point relative to the object's position
  lift: float = 0.25  # lift height above the grasp point
  place_dz: float = 0.15  # release height above the target's position
  retreat: float = 0.10  # rise after the release
  gain: float = 10.0  # action per metre of error (1.0 moves the eef about 5 cm)
  held_radius: float = 0.15  # the object counts as in hand within this distance of the eef
  tol: float = 0.01
  grip_steps: int = 12
  phase_timeout: int = 80


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
  """The noise and failure of one episode (see the module docstring)."""
  noise: float = 0.0  # Gaussian sigma on the motion part of every action
  mode: str = "none"  # "none" or one of FAILURE_MODES
  subgoal: int = 0  # the subgoal the failure hits
  amount: float = 0.0  # the mode's magnitude
  wrong_target: str = ""  # wrong_target: where the object goes instead


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where the policy is: subgoal index, phase, steps spent in it, and the grasp point."""
  subgoal: int = 0
  phase: str = APPROACH
  steps: int = 0
  anchor: tuple = ()  # the eef position when the grasp began


def sample_spec(rng, num_subgoals, noise=0.0, failure_prob=0.5, modes=FAILURE_MODES,
                candidates=()):
  """An EpisodeSpec: with probability failure_prob one of `modes` (uniform) on a random one of
  the `num_subgoals` placement subgoals, with a random magnitude; wrong_target picks from
  `candidates` (other objects or regions)."""
  if rng.random() >= failure_prob or not modes:
    return EpisodeSpec(noise=noise)
  mode = str(rng.choice(list(modes)))
  if mode == "wrong_target" and not candidates:
    mode = "missed_grasp"
  amount = {"jitter": lambda: rng.uniform(0.3, 1.0),
            "missed_grasp": lambda: rng.uniform(0.04, 0.10),
            "early_release": lambda: float(rng.integers(0, 10)),
            "wrong_target": lambda: 0.0,
            "timeout": lambda: float(rng.integers(0, PHASES.index(RELEASE)))}[mode]()
  wrong = str(rng.choice(list(candidates))) if mode == "wrong_target" else ""
  return EpisodeSpec(noise=noise, mode=mode, subgoal=int(rng.integers(0, max(1, num_subgoals))),
                     amount=float(amount), wrong_target=wrong)


def failing(spec, index, mode):
  """Whether `spec` applies failure `mode` to subgoal `index`."""
  return spec.mode == mode and spec.subgoal == index


def subgoal_target(subgoal, spec, index):
  """The name of where subgoal `index` puts its object (wrong_target swaps it)."""
  return spec.wrong_target if failing(spec, index, "wrong_target") else subgoal.target


def held_offset(obj_pos, eef_pos, params):
  """The eef's horizontal offset (3,; z = 0) from the object while the object is in hand (within
  `held_radius` of the eef); zeros otherwise. Carry and lower add it to the target, so the
  object, not the eef, ends over the target when the grasp was off-centre."""
  offset = np.asarray(eef_pos, np.float64) - np.asarray(obj_pos, np.float64)
  if np.linalg.norm(offset) > params.held_radius:
    return np.zeros(3)
  return np.array([offset[0], offset[1], 0.0])


def target_point(progress, obj_pos, target_pos, eef_pos, spec, params):
  """The point (3,) the eef aims at in the current phase."""
  obj_pos, target_pos, eef_pos = (np.asarray(p, np.float64) for p in (obj_pos, target_pos, eef_pos))
  up = np.array([0.0, 0.0, 1.0])
  phase, anchor = progress.phase, np.asarray(progress.anchor or eef_pos, np.float64)
  if phase in (CARRY, LOWER):
    target_pos = target_pos + held_offset(obj_pos, eef_pos, params)
  if phase == APPROACH:
    return obj_pos + params.above * up
  if phase == DESCEND:
    missed = spec.amount if failing(spec, progress.subgoal, "missed_grasp") else 0.0
    return obj_pos + (params.grasp_dz + missed) * up
  if phase == LIFT:
    return anchor + params.lift * up
  if phase == CARRY:
    height = max(anchor[2] + params.lift, target_pos[2] + params.place_dz)
    return np.array([target_pos[0], target_pos[1], height])
  if phase == LOWER:
    return target_pos + params.place_dz * up
  if phase == RETREAT:
    return np.array([eef_pos[0], eef_pos[1], target_pos[2] + params.place_dz + params.retreat])
  return eef_pos  # grasp, release, done: hold still


def gripper_command(phase):
  """+1 (close) while grasping and holding, -1 (open) otherwise."""
  return CLOSE if phase in CLOSED_PHASES else OPEN


def motion_action(eef_pos, point, phase, params):
  """The 7-d action: clipped proportional eef motion towards `point`, no rotation, the gripper."""
  action = np.zeros(7)
  action[:3] = np.clip(params.gain * (np.asarray(point) - np.asarray(eef_pos)), -1.0, 1.0)
  action[6] = gripper_command(phase)
  return action


def advance(progress, eef_pos, point, spec, params):
  """The next Progress: the phase ends on reaching `point` (within tol), on its timeout, or for
  grasp / release after grip_steps; early_release cuts the carry short."""
  steps = progress.steps + 1
  phase = progress.phase
  if phase in GRIP_PHASES:
    done = steps >= params.grip_steps
  else:
    done = (np.linalg.norm(np.asarray(point) - np.asarray(eef_pos)) < params.tol
            or steps >= params.phase_timeout)
  if phase == CARRY and failing(spec, progress.subgoal, "early_release") and steps > spec.amount:
    return dataclasses.replace(progress, phase=RELEASE, steps=0)
  if not done:
    return dataclasses.replace(progress, steps=steps)
  if phase == RETREAT:
    return Progress(subgoal=progress.subgoal + 1)
  following = PHASES[PHASES.index(phase) + 1]
  anchor = tuple(float(v) for v in eef_pos) if following == GRASP else progress.anchor
  return Progress(progress.subgoal, following, 0, anchor)


def stalled(progress, spec):
  """Whether the timeout failure holds the policy still now."""
  return (failing(spec, progress.subgoal, "timeout") and progress.phase in PHASES
          and PHASES.index(progress.phase) >= spec.amount)


def plan_step(progress, poses, subgoals, spec, params):
  """(action (7,), next Progress) without noise. `poses`: {"eef_pos": (3,), "objects": {name:
  (3,)}} (positions of every object and region the subgoals name)."""
  placements = [s for s in subgoals if s.kind == goals.PLACEMENT]
  eef_pos = np.asarray(poses["eef_pos"], np.float64)
  if progress.subgoal >= len(placements):
    return motion_action(eef_pos, eef_pos, DONE, params), dataclasses.replace(progress, phase=DONE)
  subgoal = placements[progress.subgoal]
  objects = poses["objects"]
  point = target_point(progress, objects[subgoal.obj],
                       objects[subgoal_target(subgoal, spec, progress.subgoal)], eef_pos, spec,
                       params)
  if stalled(progress, spec):
    action = motion_action(eef_pos, eef_pos, progress.phase, params)
    return action, dataclasses.replace(progress, steps=progress.steps + 1)
  return (motion_action(eef_pos, point, progress.phase, params),
          advance(progress, eef_pos, point, spec, params))


class ScriptedPolicy:
  """plan_step with state and jitter: `act(poses)` -> a 7-d float32 action in [-1, 1]."""

  def __init__(self, subgoals, spec=EpisodeSpec(), params=Params(), seed=0):
    """`subgoals` from goals.parse_goal; only placements are acted on."""
    self.subgoals, self.spec, self.params = list(subgoals), spec, params
    self.rng = np.random.default_rng(seed)
    self.progress = Progress()

  @property
  def done(self):
    """Whether every placement subgoal has been carried out."""
    return self.progress.phase == DONE

  def names(self):
    """The objects and regions whose positions `act` needs."""
    names = [n for s in self.subgoals if s.kind == goals.PLACEMENT for n in s.args[:2]]
    return list(dict.fromkeys(names + ([self.spec.wrong_target] if self.spec.wrong_target else [])))

  def act(self, poses):
    """The action for the current poses; advances the phase."""
    action, self.progress = plan_step(self.progress, poses, self.subgoals, self.spec, self.params)
    sigma = self.spec.noise + (self.spec.amount if failing(self.spec, self.progress.subgoal,
                                                           "jitter") else 0.0)
    if sigma > 0:
      action[:6] += self.rng.normal(0.0, sigma, 6)
    return np.clip(action, -1.0, 1.0).astype(np.float32)
