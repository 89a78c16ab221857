"""rrd_jax.sim without the simulator: the raw-obs -> RLDS mapping, goal parsing, and the scripted
policy's pose logic on mocked poses (each failure mode changes what it does)."""

import dataclasses

import numpy as np
import pytest

from rrd_jax.sim import goals, observation, scripted

# LIBERO-10 task 0, "put both the alphabet soup and the tomato sauce in the basket".
GOAL_STATE = [["in", "alphabet_soup_1", "basket_1_contain_region"],
              ["in", "tomato_sauce_1", "basket_1_contain_region"]]
SOUP, SAUCE, BASKET = np.array([-0.1, -0.15, 0.46]), np.array([-0.12, 0.05, 0.48]), \
    np.array([0.0, 0.27, 0.55])
PARAMS = scripted.Params()


def fake_raw(size=4):
  """A raw robosuite obs whose pixels say where they are (row, column, camera)."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  frame = lambda cam: np.stack([rows, cols, np.full_like(rows, cam)], -1).astype(np.uint8)
  half = np.sqrt(0.5)
  return {"agentview_image": frame(1), "robot0_eye_in_hand_image": frame(2),
          "robot0_eef_pos": np.array([0.1, 0.2, 0.3]),
          "robot0_eef_quat": np.array([half, 0.0, 0.0, half]),  # 90° about x, (x, y, z, w)
          "robot0_gripper_qpos": np.array([0.02, -0.02]),
          "robot0_joint_pos": np.arange(7, dtype=np.float64) / 10}


def poses(eef, gripper=(0.04, -0.04)):
  """The poses dict the policy reads."""
  return {"eef_pos": np.asarray(eef, float), "gripper_qpos": np.asarray(gripper),
          "objects": {"alphabet_soup_1": SOUP, "tomato_sauce_1": SAUCE,
                      "basket_1_contain_region": BASKET, "plate_1": np.array([0.2, 0.0, 0.45])}}


def test_rlds_observation_rotates_both_cameras_and_composes_the_state():
  raw = fake_raw()
  obs = observation.rlds_observation(raw)
  assert set(obs) == {"image", "wrist_image", "state", "joint_state"}
  for key, cam in (("image", 1), ("wrist_image", 2)):
    assert obs[key].shape == (4, 4, 3) and obs[key].dtype == np.uint8
    assert obs[key][0, 0].tolist() == [3, 3, cam]  # rotated 180°: the last pixel comes first
    np.testing.assert_array_equal(obs[key], raw[list(observation.CAMERAS.values())[cam - 1]]
                                  [::-1, ::-1])
  assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
  np.testing.assert_allclose(obs["state"], [0.1, 0.2, 0.3, np.pi / 2, 0, 0, 0.02, -0.02],
                             atol=1e-6)
  assert obs["joint_state"].shape == (7,) and obs["joint_state"].dtype == np.float32
  np.testing.assert_allclose(obs["joint_state"], np.arange(7) / 10, atol=1e-7)
  assert set(observation.rlds_observation(raw, images=False)) == {"state", "joint_state"}


def test_hdf5_observation_round_trips_through_the_converters_rotation():
  raw = fake_raw()
  hdf5, rlds = observation.hdf5_observation(raw), observation.rlds_observation(raw)
  np.testing.assert_array_equal(hdf5["agentview_rgb"], raw["agentview_image"])  # as LIBERO stores
  # rrd_jax.data.libero_hdf5 rotates [::-1, ::-1] and concatenates ee_states + gripper_states.
  np.testing.assert_array_equal(hdf5["agentview_rgb"][::-1, ::-1], rlds["image"])
  np.testing.assert_array_equal(hdf5["eye_in_hand_rgb"][::-1, ::-1], rlds["wrist_image"])
  np.testing.assert_allclose(np.concatenate([hdf5["ee_states"], hdf5["gripper_states"]]),
                             rlds["state"], atol=1e-6)
  assert hdf5["ee_states"].shape == (6,) and hdf5["joint_states"].shape == (7,)


def test_quat_to_axis_angle_matches_robosuite_conventions():
  np.testing.assert_allclose(observation.quat_to_axis_angle([0, 0, 0, 1]), np.zeros(3))
  np.testing.assert_allclose(observation.quat_to_axis_angle([1, 0, 0, 0]), [np.pi, 0, 0],
                             atol=1e-7)
  s = np.sin(0.3)
  np.testing.assert_allclose(observation.quat_to_axis_angle([0, 0, s, np.cos(0.3)]), [0, 0, 0.6],
                             atol=1e-7)


def test_parse_goal_classifies_and_evaluates():
  subgoals = goals.parse_goal(GOAL_STATE)
  assert [(s.predicate, s.obj, s.target, s.kind) for s in subgoals] == [
      ("in", "alphabet_soup_1", "basket_1_contain_region", goals.PLACEMENT),
      ("in", "tomato_sauce_1", "basket_1_contain_region", goals.PLACEMENT)]
  assert goals.placements_only(subgoals)
  mixed = goals.parse_goal([["And", ["On", "bowl_1", "plate_1"], ["Open", "drawer_1"]],
                            ["TurnOn", "stove_1"], ["Up", "x"]])
  assert [(s.predicate, s.kind) for s in mixed] == [
      ("on", goals.PLACEMENT), ("open", goals.ARTICULATED), ("turnon", goals.ARTICULATED),
      ("up", goals.OTHER)]
  assert mixed[1].target is None and not goals.placements_only(mixed)
  seen = []
  status = goals.evaluate(subgoals, lambda p: seen.append(p) or p[1] == "tomato_sauce_1")
  assert status == [False, True] and seen == [s.as_list() for s in subgoals]
  with pytest.raises(ValueError):
    goals.parse_goal(["in", "a", "b"])


def run_phases(spec=scripted.EpisodeSpec(), eef=(0.0, 0.0, 0.7), steps=400):
  """Steps plan_step on a mock arm that moves 80% of the way to each commanded point; returns
  [(progress, action, eef)] per step."""
  subgoals, progress, eef = goals.parse_goal(GOAL_STATE), scripted.Progress(), np.array(eef)
  trace = []
  for _ in range(steps):
    action, following = scripted.plan_step(progress, poses(eef), subgoals, spec, PARAMS)
    trace.append((progress, action, eef.copy()))
    eef = eef + 0.8 * action[:3] / PARAMS.gain
    progress = following
    if progress.phase == scripted.DONE:
      break
  return trace


def first(trace, phase, subgoal=0):
  """The first trace entry of `phase` on `subgoal`."""
  return next(t for t in trace if t[0].phase == phase and t[0].subgoal == subgoal)


def last(trace, phase, subgoal=0):
  """The last trace entry of `phase` on `subgoal`."""
  return [t for t in trace if t[0].phase == phase and t[0].subgoal == subgoal][-1]


def test_pick_and_place_phases_on_mocked_poses():
  trace = run_phases()
  phases = list(dict.fromkeys((t[0].subgoal, t[0].phase) for t in trace))
  assert phases == [(i, p) for i in (0, 1) for p in scripted.PHASES] + [(2, scripted.APPROACH)]
  assert not trace[-1][1][:3].any()  # past the last subgoal: holds still, then done
  top = PARAMS.above * np.array([0, 0, 1])
  np.testing.assert_allclose(last(trace, scripted.APPROACH)[2], SOUP + top, atol=0.02)
  grasp = first(trace, scripted.GRASP)
  np.testing.assert_allclose(grasp[2], SOUP, atol=0.02)  # descended onto the object
  assert grasp[1][6] == scripted.CLOSE and not grasp[1][:3].any()  # closes, holding still
  assert first(trace, scripted.DESCEND)[1][6] == scripted.OPEN
  assert sum(t[0].phase == scripted.GRASP and t[0].subgoal == 0 for t in trace) == PARAMS.grip_steps
  lift = first(trace, scripted.LIFT)
  assert lift[1][2] > 0 and lift[1][6] == scripted.CLOSE  # lifts with the object
  carry_end = last(trace, scripted.CARRY)[2]
  np.testing.assert_allclose(carry_end[:2], BASKET[:2], atol=0.02)  # moved over the target
  assert carry_end[2] > SOUP[2] + PARAMS.lift - 0.03
  release = first(trace, scripted.RELEASE)
  np.testing.assert_allclose(release[2], BASKET + PARAMS.place_dz * np.array([0, 0, 1]),
                             atol=0.02)
  assert release[1][6] == scripted.OPEN  # releases over the target
  np.testing.assert_allclose(first(trace, scripted.GRASP, 1)[2], SAUCE, atol=0.02)  # then sauce
  assert all(np.all(np.abs(t[1]) <= 1) for t in trace) and all(not t[1][3:6].any() for t in trace)


def test_motion_action_is_proportional_and_clipped():
  action = scripted.motion_action([0, 0, 0], [0.01, -0.5, 0.0], scripted.LIFT, PARAMS)
  np.testing.assert_allclose(action, [0.1, -1, 0, 0, 0, 0, scripted.CLOSE])


def test_carry_and_lower_aim_the_held_object_at_the_target():
  held = scripted.Progress(0, scripted.CARRY, 0, (0.0, 0.0, 0.5))
  eef, obj = np.array([0.1, 0.1, 0.75]), np.array([0.05, 0.1, 0.70])  # grasped 5 cm off-centre
  point = scripted.target_point(held, obj, BASKET, eef, scripted.EpisodeSpec(), PARAMS)
  np.testing.assert_allclose(point[:2], BASKET[:2] + [0.05, 0.0])
  lower = dataclasses.replace(held, phase=scripted.LOWER)
  point = scripted.target_point(lower, obj, BASKET, eef, scripted.EpisodeSpec(), PARAMS)
  np.testing.assert_allclose(point, BASKET + [0.05, 0.0, PARAMS.place_dz])
  dropped = np.array([0.1, 0.1, 0.45])  # left on the table: aim the eef itself
  point = scripted.target_point(held, dropped, BASKET, eef, scripted.EpisodeSpec(), PARAMS)
  np.testing.assert_allclose(point[:2], BASKET[:2])


def test_missed_grasp_closes_too_high():
  spec = scripted.EpisodeSpec(mode="missed_grasp", subgoal=0, amount=0.08)
  np.testing.assert_allclose(first(run_phases(spec), scripted.GRASP)[2], SOUP + [0, 0, 0.08],
                             atol=0.02)
  np.testing.assert_allclose(first(run_phases(spec), scripted.GRASP, 1)[2], SAUCE, atol=0.02)


def test_early_release_opens_during_the_carry():
  spec = scripted.EpisodeSpec(mode="early_release", subgoal=0, amount=3)
  trace = run_phases(spec)
  assert sum(t[0].phase == scripted.CARRY and t[0].subgoal == 0 for t in trace) == 4
  release = first(trace, scripted.RELEASE)
  assert np.linalg.norm(release[2][:2] - BASKET[:2]) > 0.05  # short of the basket
  assert scripted.LOWER not in [t[0].phase for t in trace if t[0].subgoal == 0]


def test_wrong_target_places_elsewhere():
  spec = scripted.EpisodeSpec(mode="wrong_target", subgoal=1, wrong_target="plate_1")
  trace = run_phases(spec)
  np.testing.assert_allclose(first(trace, scripted.RELEASE, 1)[2][:2], [0.2, 0.0], atol=0.02)
  np.testing.assert_allclose(first(trace, scripted.RELEASE, 0)[2][:2], BASKET[:2], atol=0.02)


def test_timeout_stalls_from_its_phase():
  spec = scripted.EpisodeSpec(mode="timeout", subgoal=0, amount=scripted.PHASES.index("lift"))
  trace = run_phases(spec, steps=300)
  assert trace[-1][0].phase == scripted.LIFT and trace[-1][0].subgoal == 0
  stalled = [t for t in trace if t[0].phase == scripted.LIFT]
  assert len(stalled) > 200 and all(not t[1][:3].any() and t[1][6] == scripted.CLOSE
                                    for t in stalled)


def test_jitter_and_noise_perturb_only_the_motion():
  subgoals = goals.parse_goal(GOAL_STATE)
  clean = scripted.ScriptedPolicy(subgoals).act(poses([0, 0, 0.7]))
  for spec in (scripted.EpisodeSpec(noise=0.1), scripted.EpisodeSpec(mode="jitter", amount=0.5)):
    noisy = scripted.ScriptedPolicy(subgoals, spec, seed=1).act(poses([0, 0, 0.7]))
    assert noisy.dtype == np.float32 and np.all(np.abs(noisy) <= 1)
    assert not np.allclose(noisy[:6], clean[:6]) and noisy[6] == clean[6]
  again = [scripted.ScriptedPolicy(subgoals, scripted.EpisodeSpec(noise=0.1), seed=seed).act(
      poses([0, 0, 0.7])) for seed in (1, 1, 2)]
  np.testing.assert_array_equal(again[0], again[1])  # seeded
  assert not np.allclose(again[0], again[2])


def test_sample_spec_mixes_modes_reproducibly():
  draw = lambda seed: [scripted.sample_spec(np.random.default_rng(seed * 100 + i), 2, 0.05, 0.6,
                                            candidates=("plate_1",)) for i in range(200)]
  specs = draw(0)
  assert specs == draw(0)
  modes = {s.mode for s in specs}
  assert modes == {"none", *scripted.FAILURE_MODES}
  assert 0.3 < np.mean([s.mode == "none" for s in specs]) < 0.5
  assert {s.subgoal for s in specs if s.mode != "none"} == {0, 1}
  assert all(s.wrong_target == "plate_1" for s in specs if s.mode == "wrong_target")
  assert len({s.amount for s in specs if s.mode == "missed_grasp"}) > 10  # graded magnitudes
  assert {s.amount for s in specs if s.mode == "timeout"} <= set(range(
      scripted.PHASES.index(scripted.RELEASE)))  # never stalls once releasing
  no_candidates = scripted.sample_spec(np.random.default_rng(0), 2, 0.0, 1.0,
                                       modes=("wrong_target",))
  assert no_candidates.mode == "missed_grasp"
  assert dataclasses.asdict(scripted.sample_spec(np.random.default_rng(0), 2, 0.1, 0.0)) == \
      dataclasses.asdict(scripted.EpisodeSpec(noise=0.1))
