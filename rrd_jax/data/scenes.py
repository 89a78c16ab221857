"""The embedded dataset's episodes, generated with numpy alone (no TensorFlow): the scenes, the
motions, the rendered frames and the LIBERO-layout step dicts that rrd_jax/data/embedded.py
writes as an RLDS dataset.

Task "touch" (the default): a 2-D tabletop; a red block sits at a random place on the table, the
robot's end-effector (a blue disc) moves around it. The known dense reward is 1.0 on every step
where the end-effector touches the block (centre distance < TOUCH_RADIUS) and 0 elsewhere, so
returns vary between episodes and which steps earned them is visible in the image (the block's
position is in no low-dim feature, unless block_in_state appends it to observation/state).

Task "instructed" (LIBERO-like demos): three blocks; the instruction names the one in colour
("touch the green block"), the two others are grey distractors (each task has its own scene, as in
LIBERO-10). A successful episode moves to that block at its own pace and ends when
touching it, with reward 1.0 on the last step only, as in LIBERO's RLDS demos (every return is 1).
With success_rate < 1 (policy rollouts) a failed episode goes to a wrong block, wanders and is cut
at max_length with reward 0 everywhere.
Features, dtypes and shapes follow LIBERO's RLDS layout (see docs/LIBERO_RLDS.md).
"""

import dataclasses
import hashlib
import json

import numpy as np

from rrd_jax.config.schema import EMBEDDED_TASKS as TASKS

BUILDER_NAME = "rrd_synthetic_libero"
DATASET_VERSION = "1.0.0"
TOUCH_RADIUS = 0.1
BLOCK_HALF_SIZE = 0.06
EEF_RADIUS = 0.05
GENERATOR_REVISION = 1  # bump when generate_episode changes, so cached copies are regenerated
INSTRUCTIONS = ("touch the red block", "reach for the red block", "tap the red block")
REWARD_DOCS = {"touch": "Dense reward: 1.0 while touching the block.",
               "oxe": "0 on every step (demos without reward labels).",
               "instructed": "1.0 on the last step of a successful episode, else 0."}
BLOCK_COLOURS = {"red": (0.85, 0.1, 0.1), "green": (0.1, 0.65, 0.2), "yellow": (0.9, 0.8, 0.1)}
DISTRACTOR_COLOUR = (0.35, 0.35, 0.35)


@dataclasses.dataclass(frozen=True)
class EmbeddedParams:
  num_episodes: int = 200
  min_length: int = 30
  max_length: int = 60
  image_size: int = 96  # stored JPEG resolution (the pipeline resizes to data.image_size)
  seed: int = 0
  num_shards: int = 4
  task: str = "touch"  # one of TASKS
  success_rate: float = 1.0  # task "instructed": fraction of successful episodes
  block_in_state: bool = False  # task "touch": observation/state also holds the block's (x, y),
  #                               so a state-only (mlp) model can tell where the reward is earned
  layout: str = "libero"  # "oxe": Open X-Embodiment style: cameras observation/image_0 (main) and
  #                         image_1 (wrist), a 7-d observation/state, reward 0 on every step

  def key(self):
    fields = dataclasses.asdict(self)
    if self.task == "touch":  # fields added later leave the default dataset's key unchanged
      del fields["task"], fields["success_rate"]
    if not self.block_in_state:
      del fields["block_in_state"]
    if self.layout == "libero":
      del fields["layout"]
    text = json.dumps(fields, sort_keys=True) + f"{DATASET_VERSION}/{GENERATOR_REVISION}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def render(size, block_xy, eef_xy, tint, center=(0.5, 0.5), extent=1.0, blocks=None):
  """Renders the scene seen through a square window (center, extent) as a uint8 [size, size, 3].

  blocks: [(xy, rgb)] to draw; default one red block at block_xy."""
  grid = (np.arange(size, dtype=np.float32) + 0.5) / size
  ys = center[1] + (grid[:, None] - 0.5) * extent  # [S, 1] world y per row
  xs = center[0] + (grid[None, :] - 0.5) * extent  # [1, S] world x per column
  image = np.empty((size, size, 3), np.float32)
  image[...] = tint  # table colour
  image += 0.08 * np.sin(6.0 * xs + 3.0 * ys)[..., None]  # mild table texture
  on_table = (xs >= 0) & (xs <= 1) & (ys >= 0) & (ys <= 1)
  image[~on_table] = 0.15
  for xy, colour in blocks or [(block_xy, BLOCK_COLOURS["red"])]:
    block = (np.abs(xs - xy[0]) < BLOCK_HALF_SIZE) & (np.abs(ys - xy[1]) < BLOCK_HALF_SIZE)
    image[block] = colour
  eef = np.square(xs - eef_xy[0]) + np.square(ys - eef_xy[1]) < EEF_RADIUS**2
  image[eef] = (0.1, 0.2, 0.9)
  return np.clip(image * 255.0, 0, 255).astype(np.uint8)


def _touch_motion(params, rng, length):
  """EEF positions [T, 2], gripper closed [T], dense reward [T] and the scene of task "touch"."""
  block = rng.uniform(0.2, 0.8, size=2)
  eef = rng.uniform(0.1, 0.9, size=2)
  # Phases: wander, then (with prob. 0.7) reach and stay on the block for a while, then wander.
  reach_start = int(rng.integers(0, length // 2)) if rng.random() < 0.7 else length
  reach_end = reach_start + int(rng.integers(length // 6, length // 2 + 1))
  goal = rng.uniform(0.1, 0.9, size=2)
  positions, fingers = [], []
  gripper_closed = bool(rng.random() < 0.5)
  for t in range(length):
    if reach_start <= t < reach_end:
      goal = block + rng.normal(0, 0.02, size=2)
    elif rng.random() < 0.08 or t == reach_end:
      goal = rng.uniform(0.1, 0.9, size=2)
    positions.append(eef.copy())
    step = np.clip(0.3 * (goal - eef), -0.08, 0.08) + rng.normal(0, 0.01, size=2)
    eef = np.clip(eef + step, 0.02, 0.98)
    if rng.random() < 0.1:
      gripper_closed = not gripper_closed
    fingers.append(gripper_closed)
  positions = np.asarray(positions, np.float32)  # [T, 2]
  reward = (np.linalg.norm(positions - block[None], axis=-1) < TOUCH_RADIUS).astype(np.float32)
  return positions, np.asarray(fingers), reward, [(block, BLOCK_COLOURS["red"])]


def _place_blocks(rng, count):
  while True:
    xy = rng.uniform(0.15, 0.85, size=(count, 2))
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(count)
    if gaps.min() > 3 * BLOCK_HALF_SIZE + 2 * TOUCH_RADIUS:
      return xy


def _instructed_motion(params, rng, target, success):
  """Task "instructed": move to the target block (success, ends on touching it) or to a wrong one
  and wander until max_length (failure)."""
  colours = list(BLOCK_COLOURS)
  blocks = _place_blocks(rng, len(colours))
  eef = rng.uniform(0.05, 0.95, size=2)
  speed = rng.uniform(0.005, 0.02)  # the demonstrator's pace: slow demos are long
  goal_block = target if success else (target + int(rng.integers(1, len(colours)))) % len(colours)
  wander_until = int(rng.integers(0, max(1, params.min_length // 3)))
  goal = rng.uniform(0.1, 0.9, size=2)
  positions, fingers, done = [], [], False
  for t in range(params.max_length):
    positions.append(eef.copy())
    fingers.append(t >= wander_until)
    touching = np.linalg.norm(eef - blocks[goal_block]) < TOUCH_RADIUS
    if success and touching and t + 1 >= params.min_length:
      done = True  # the demo ends on the step that touches the instructed block
      break
    if t >= wander_until:
      goal = blocks[goal_block] + rng.normal(0, 0.01, size=2)
      if not success and touching:  # a failed rollout leaves the wrong block and wanders
        wander_until = params.max_length
    elif rng.random() < 0.08:
      goal = rng.uniform(0.1, 0.9, size=2)
    step = np.clip(0.3 * (goal - eef), -speed, speed) + rng.normal(0, 0.005, size=2)
    eef = np.clip(eef + step, 0.02, 0.98)
  positions = np.asarray(positions, np.float32)
  reward = np.zeros(len(positions), np.float32)
  reward[-1] = float(done)
  # Each task has its own scene, as in LIBERO-10: its named block among grey distractors.
  scene = [(blocks[i], BLOCK_COLOURS[c] if i == target else DISTRACTOR_COLOUR)
           for i, c in enumerate(colours)]
  return positions, np.asarray(fingers), reward, scene


def generate_episode(params, episode_index):
  """One episode as a dict in the LIBERO RLDS layout (numpy arrays, images uint8)."""
  rng = np.random.default_rng([params.seed, episode_index])
  if params.task == "touch":
    length = int(rng.integers(params.min_length, params.max_length + 1))
    positions, fingers, reward, scene = _touch_motion(params, rng, length)
    instruction = INSTRUCTIONS[episode_index % len(INSTRUCTIONS)]
  elif params.task == "instructed":
    target = episode_index % len(BLOCK_COLOURS)
    success = bool(rng.random() < params.success_rate)
    positions, fingers, reward, scene = _instructed_motion(params, rng, target, success)
    instruction = f"touch the {list(BLOCK_COLOURS)[target]} block"
  else:
    raise ValueError(f"unknown embedded task {params.task!r}; expected one of {TASKS}")
  length = len(positions)
  next_positions = np.concatenate([positions[1:], positions[-1:]])
  height = 0.1 + 0.01 * np.sin(np.arange(length, dtype=np.float32) / 5.0)
  axis_angle = np.tile(np.asarray([np.pi, 0.0, 0.0], np.float32), (length, 1))
  axis_angle += rng.normal(0, 0.01, size=(length, 3)).astype(np.float32)
  finger_pos = np.where(np.asarray(fingers)[:, None], 0.0, 0.04) * np.asarray([1.0, -1.0])
  state = np.concatenate([positions, height[:, None], axis_angle, finger_pos], -1).astype(np.float32)
  if params.block_in_state:
    state = np.concatenate([state, np.tile(scene[0][0], (length, 1))], -1).astype(np.float32)
  joint_state = np.concatenate([np.sin(3 * positions), np.cos(3 * positions), height[:, None],
                                np.sin(positions[:, :1] + positions[:, 1:]),
                                np.cos(positions[:, :1] - positions[:, 1:])], -1).astype(np.float32)
  action = np.zeros((length, 7), np.float32)
  action[:, :2] = (next_positions - positions) * 10.0
  action[:, 2:6] = rng.normal(0, 0.01, size=(length, 4))
  action[:, 6] = np.where(np.asarray(fingers), 1.0, -1.0)
  tint = np.asarray([0.55, 0.5, 0.42], np.float32)
  images = np.stack([render(params.image_size, None, p, tint, blocks=scene) for p in positions])
  wrist = np.stack([render(params.image_size, None, p, tint, center=p, extent=0.4, blocks=scene)
                    for p in positions])
  is_last = np.zeros(length, bool)
  is_last[-1] = True
  observation = {"image": images, "wrist_image": wrist, "state": state, "joint_state": joint_state}
  if params.layout == "oxe":
    observation = {"image_0": images, "image_1": wrist, "state": joint_state}
    reward = np.zeros_like(reward)
  steps = {
      "observation": observation,
      "action": action,
      "reward": reward,
      "discount": np.ones(length, np.float32),
      "is_first": np.arange(length) == 0,
      "is_last": is_last,
      "is_terminal": is_last.copy(),
      "language_instruction": [instruction] * length,
  }
  file_path = f"/embedded/{BUILDER_NAME}/episode_{episode_index:05d}.hdf5"
  return {"steps": steps, "episode_metadata": {"file_path": file_path}}
