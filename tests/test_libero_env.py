"""One real LIBERO env (LIBERO-10 task 0 at 64²), in the second environment's python: observation
keys, shapes, dtypes and orientation, the instruction, success at reset, and a state round trip."""

import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in the LIBERO environment; prints one JSON line of facts the test checks.
PROBE = r"""
import json
import numpy as np
from rrd_jax.sim import libero_env

env = libero_env.LiberoEnv("libero_10", 0, image_size=64)
obs = env.reset(0)
facts = {"instruction": env.instruction, "success_at_reset": env.check_success(),
         "subgoal_status": env.subgoal_status(),
         "subgoals": [s.as_list() for s in env.subgoals],
         "layout": {k: [list(v.shape), str(v.dtype)] for k, v in obs.items()}}
raw = env.raw
facts["rotated"] = all(np.array_equal(obs[k], raw[r][::-1, ::-1])
                       for k, r in (("image", "agentview_image"),
                                    ("wrist_image", "robot0_eye_in_hand_image")))
image = obs["image"].astype(float)
# The robot (light grey, unsaturated) stands at the far side of the table: the top of the frame.
grey = (image.min(-1) > 150) & (image.max(-1) - image.min(-1) < 25)
facts["robot_rows_top_bottom"] = [int(grey[:32].sum()), int(grey[32:].sum())]
facts["state_matches"] = bool(
    np.allclose(obs["state"][:3], raw["robot0_eef_pos"], atol=1e-6)
    and np.allclose(obs["state"][6:], raw["robot0_gripper_qpos"], atol=1e-6)
    and np.allclose(obs["joint_state"], raw["robot0_joint_pos"], atol=1e-6))
saved = env.get_state()
action = np.array([0.5, 0.0, 0.5, 0.0, 0.0, 0.0, -1.0])
for _ in range(5):
  stepped, reward, done, _ = env.step(action)
facts["moved"] = float(np.linalg.norm(stepped["state"][:3] - obs["state"][:3]))
facts["reward_done"] = [reward, done]
restored = env.set_state(saved)
facts["restored"] = float(np.abs(restored["state"] - obs["state"]).max())
facts["state_size"] = int(saved.size)
env.close()
print("FACTS " + json.dumps(facts))
"""


def libero_python():
  """The LIBERO environment's python: $RRD_LIBERO_PYTHON, else .venv-libero/bin/python."""
  named = os.environ.get("RRD_LIBERO_PYTHON")
  if named:
    return named
  default = os.path.join(ROOT, ".venv-libero", "bin", "python")
  return default if os.path.exists(default) else None


@pytest.fixture(scope="module")
def facts():
  """The probe's facts, from one env built in a subprocess (about 30-60 s on 2 cores)."""
  python = libero_python()
  if python is None:
    pytest.skip("no LIBERO environment: create it with launch/libero_setup.sh (or name its "
                "python in RRD_LIBERO_PYTHON)")
  result = subprocess.run([python, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
  lines = [l for l in result.stdout.splitlines() if l.startswith("FACTS ")]
  assert result.returncode == 0 and lines, (result.stdout[-2000:], result.stderr[-4000:])
  return json.loads(lines[-1][len("FACTS "):])


def test_observation_layout(facts):
  assert facts["layout"] == {"image": [[64, 64, 3], "uint8"], "wrist_image": [[64, 64, 3], "uint8"],
                             "state": [[8], "float32"], "joint_state": [[7], "float32"]}
  assert facts["state_matches"]


def test_images_are_rotated_like_the_converted_demos(facts):
  assert facts["rotated"]
  top, bottom = facts["robot_rows_top_bottom"]
  assert top > 3 * max(bottom, 1), facts["robot_rows_top_bottom"]


def test_instruction_goal_and_success_at_reset(facts):
  assert facts["instruction"] == "put both the alphabet soup and the tomato sauce in the basket"
  assert facts["subgoals"] == [["in", "alphabet_soup_1", "basket_1_contain_region"],
                               ["in", "tomato_sauce_1", "basket_1_contain_region"]]
  assert facts["success_at_reset"] is False and facts["subgoal_status"] == [False, False]
  assert facts["reward_done"] == [0.0, False]


def test_steps_move_the_arm_and_the_state_restores(facts):
  assert facts["moved"] > 0.005
  assert facts["restored"] < 1e-5
  assert facts["state_size"] > 1 + 7
