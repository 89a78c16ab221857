"""Small native-LIBERO HDF5 files for the converter's tests.

Images are smooth gradients that differ from their 180° rotation (so the flip is checkable after
JPEG); actions[:, 0] encodes the demo number, so episode order is checkable after conversion.
"""

import os

import h5py
import numpy as np

# file name -> {demo number: (length, no-op steps, "still" steps that change the gripper)}
DEMO_FILES = {
    "KITCHEN_SCENE3_put_the_bowl_on_the_plate_demo.hdf5": {
        0: (6, (), ()), 2: (8, (3, 4, 7), ()), 10: (5, (), ())},
    "LIVING_ROOM_SCENE12_pick_up_the_book_demo.hdf5": {1: (7, (), ()), 3: (6, (0,), (2,))},
    "open_the_drawer_demo.hdf5": {0: (6, (), ()), 5: (1, (), ())},
}
INSTRUCTIONS = {
    "KITCHEN_SCENE3_put_the_bowl_on_the_plate_demo.hdf5": "put the bowl on the plate",
    "LIVING_ROOM_SCENE12_pick_up_the_book_demo.hdf5": "pick up the book",
    "open_the_drawer_demo.hdf5": "open the drawer",
}
NOOPS_DROPPED = 4  # demo_2: steps 3, 4, 7; demo_3: step 0 (step 2 changes the gripper: kept)


def frames(length, size, demo, wrist=False):
  """[length, size, size, 3] uint8 gradients (rows in red, columns in green): not symmetric
  under a 180° rotation."""
  ramp = np.linspace(0, 255, size, dtype=np.float32)
  image = np.empty((length, size, size, 3), np.float32)
  image[..., 0] = ramp[None, :, None] if not wrist else 255 - ramp[None, :, None]
  image[..., 1] = ramp[None, None, :] * (0.5 if wrist else 1.0)
  image[..., 2] = (40 * demo + 10 * np.arange(length)[:, None, None]) % 256
  return image.astype(np.uint8)


def demo_arrays(demo, length, noops=(), still_switch=(), size=16, seed=0):
  """The arrays of one demo in the native LIBERO layout (keys relative to data/demo_<n>)."""
  rng = np.random.default_rng([seed, demo])
  actions = np.zeros((length, 7), np.float32)
  actions[:, :6] = rng.uniform(0.05, 0.2, size=(length, 6)) * rng.choice([-1, 1], size=(length, 6))
  actions[:, 0] = 0.01 * (demo + 1)  # the demo number, readable after conversion
  gripper = -1.0
  for t in range(length):
    if t in still_switch:
      gripper = -gripper
      actions[t, :6] = 0.0
    if t in noops:
      actions[t, :6] = 0.0
    actions[t, 6] = gripper
  rewards = np.zeros(length, np.uint8)
  rewards[-1] = 1
  t = np.arange(length, dtype=np.float32)[:, None]
  return {
      "actions": actions,
      "rewards": rewards,
      "dones": rewards.copy(),
      "states": rng.normal(size=(length, 9)).astype(np.float32),
      "obs/agentview_rgb": frames(length, size, demo),
      "obs/eye_in_hand_rgb": frames(length, size, demo, wrist=True),
      "obs/ee_states": (0.1 * t + np.arange(6)).astype(np.float64),
      "obs/gripper_states": np.concatenate([0.04 - 0.001 * t, 0.001 * t - 0.04], -1),
      "obs/joint_states": (0.01 * t + np.arange(7) + demo).astype(np.float64),
      "obs/ee_pos": (0.1 * t + np.arange(3)).astype(np.float64),
  }


def write_file(path, demos, size=16, seed=0):
  """Writes one LIBERO HDF5 file; demos: {number: (length, noop steps, still-switch steps)}."""
  with h5py.File(path, "w") as f:
    data = f.create_group("data")
    for demo, (length, noops, switches) in demos.items():
      for key, value in demo_arrays(demo, length, noops, switches, size, seed).items():
        data.create_dataset(f"demo_{demo}/{key}", data=value)
  return path


def write_demo_dir(directory, size=16):
  """Writes DEMO_FILES into `directory`; returns it."""
  os.makedirs(directory, exist_ok=True)
  for name, demos in DEMO_FILES.items():
    write_file(os.path.join(directory, name), demos, size)
  return directory
