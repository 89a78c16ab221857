"""The raw robosuite observation of a LIBERO env -> the project's layouts (pure numpy).

docs/LIBERO_RLDS.md: the RLDS `image` / `wrist_image` are the renders rotated 180°
(`img[::-1, ::-1]`; robosuite renders upside down, and the RLDS demos are stored rotated), `state`
is eef position (3) + eef axis-angle (3) + the two gripper finger positions (2), `joint_state` the
7 joint angles. LIBERO's own HDF5 demos keep the renders as robosuite gives them and
rrd_jax.data.libero_hdf5 rotates them on conversion, so `hdf5_observation` leaves them unrotated:
converting its output yields exactly `rlds_observation`'s images.
"""

import numpy as np

CAMERAS = {"image": "agentview_image", "wrist_image": "robot0_eye_in_hand_image"}
HDF5_CAMERAS = {"agentview_rgb": "agentview_image", "eye_in_hand_rgb": "robot0_eye_in_hand_image"}


def quat_to_axis_angle(quat):
  """(x, y, z, w) quaternion -> axis-angle (3,), as robosuite's transform_utils.quat2axisangle."""
  quat = np.asarray(quat, np.float64)
  w = float(np.clip(quat[3], -1.0, 1.0))
  den = np.sqrt(1.0 - w * w)
  if np.isclose(den, 0.0):
    return np.zeros(3)
  return quat[:3] * 2.0 * np.arccos(w) / den


def ee_state(raw):
  """LIBERO's `ee_states`: eef position (3) + eef orientation as axis-angle (3)."""
  return np.concatenate([np.asarray(raw["robot0_eef_pos"], np.float64),
                         quat_to_axis_angle(raw["robot0_eef_quat"])])


def _image(raw, key):
  """A camera frame as uint8 (H, W, 3), checked."""
  frame = np.asarray(raw[key])
  if frame.ndim != 3 or frame.shape[-1] != 3:
    raise ValueError(f"{key} has shape {frame.shape}; expected (H, W, 3)")
  return frame.astype(np.uint8, copy=False)


def rlds_observation(raw, images=True):
  """The RLDS observation (image, wrist_image, state, joint_state) of one raw robosuite obs;
  images=False: state and joint_state only (an env built without cameras)."""
  images = {name: np.ascontiguousarray(_image(raw, key)[::-1, ::-1])
            for name, key in CAMERAS.items()} if images else {}
  state = np.concatenate([ee_state(raw), np.asarray(raw["robot0_gripper_qpos"], np.float64)])
  return {**images, "state": state.astype(np.float32),
          "joint_state": np.asarray(raw["robot0_joint_pos"], np.float32)}


def hdf5_observation(raw):
  """LIBERO's HDF5 `obs/...` entries of one step (renders unrotated, as LIBERO records them)."""
  images = {name: _image(raw, key).copy() for name, key in HDF5_CAMERAS.items()}
  return {**images, "ee_states": ee_state(raw),
          "gripper_states": np.asarray(raw["robot0_gripper_qpos"], np.float64),
          "joint_states": np.asarray(raw["robot0_joint_pos"], np.float64),
          "ee_pos": np.asarray(raw["robot0_eef_pos"], np.float64),
          "ee_ori": quat_to_axis_angle(raw["robot0_eef_quat"])}
