"""LIBERO HDF5 -> RLDS conversion: contents, the 180° flip, no-op filtering, and bad input."""

import concurrent.futures
import math
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rrd_jax.data import embedded, rlds
from rrd_jax.data import libero_hdf5 as convert_lib
from rrd_jax.util.errors import UserError
from tests import hdf5_demos
from tests.test_cli_errors import message_lines, snapshot

SIZE = 16
# (file, demo number) of every converted episode, in dataset order (demo_5 has 1 step: skipped).
EPISODES = [(name, demo) for name, demos in hdf5_demos.DEMO_FILES.items()
            for demo in sorted(demos) if demos[demo][0] >= 2]


def read_episodes(version_dir):
  """(builder, [episode]) with each episode's steps batched into numpy arrays."""
  builder = tfds.builder_from_directory(version_dir)
  episodes = []
  for episode in builder.as_dataset(split="train"):
    steps = next(iter(episode["steps"].batch(10_000)))
    episodes.append(tf.nest.map_structure(lambda x: x.numpy(), {
        "steps": steps, "episode_metadata": episode["episode_metadata"]}))
  return builder, episodes


def source(demo_dir, name, demo):
  with h5py.File(os.path.join(demo_dir, name), "r") as f:
    group = f["data"][f"demo_{demo}"]
    return {key: group[key][()] for key in convert_lib.REQUIRED_KEYS}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
  return hdf5_demos.write_demo_dir(str(tmp_path_factory.mktemp("hdf5") / "libero_goal"), SIZE)


@pytest.fixture(scope="module")
def converted(demo_dir, tmp_path_factory):
  """(version dir, log lines) of the plain conversion (default name, no filtering)."""
  out, logs = str(tmp_path_factory.mktemp("out")), []
  return convert_lib.convert(demo_dir, out, image_size=SIZE, log=logs.append), logs


@pytest.fixture(scope="module")
def filtered(demo_dir, tmp_path_factory):
  """The --filter_noops conversion, resized to 24 px, 2 episodes per shard, from a file list."""
  files = ",".join(os.path.join(demo_dir, name) for name in hdf5_demos.DEMO_FILES)
  return convert_lib.convert(files, str(tmp_path_factory.mktemp("out")), image_size=24,
                             filter_noops=True, name="goal_filtered", shard_episodes=2,
                             log=lambda *_: None)


def test_layout_counts_and_log(converted):
  version_dir, logs = converted
  assert version_dir.endswith(os.path.join("libero_goal", "1.0.0"))
  assert os.listdir(os.path.dirname(version_dir)) == ["1.0.0"]  # no temporary directory left
  assert logs[-1] == version_dir
  assert any("Skipping 1 demo" in line for line in logs)
  builder = rlds.open_builder(version_dir)
  index = rlds.build_index(builder, rlds.FeatureKeys())
  expected_lengths = [hdf5_demos.DEMO_FILES[name][demo][0] for name, demo in EPISODES]
  assert index.lengths.tolist() == expected_lengths
  assert builder.info.splits["train"].num_examples == len(EPISODES) == 6
  np.testing.assert_allclose(index.returns, 1.0)
  assert index.instructions == [hdf5_demos.INSTRUCTIONS[name] for name, _ in EPISODES]


def test_features_are_the_libero_spec(converted):
  builder = tfds.builder_from_directory(converted[0])
  assert builder.info.features.to_json() == embedded.libero_features(SIZE).to_json()
  assert list(builder.info.splits) == ["train"]


def test_episode_contents_and_flip(converted, demo_dir):
  _, episodes = read_episodes(converted[0])
  assert len(episodes) == len(EPISODES)
  for episode, (name, demo) in zip(episodes, EPISODES):
    src = source(demo_dir, name, demo)
    steps = episode["steps"]
    assert episode["episode_metadata"]["file_path"].decode() == os.path.join(demo_dir, name)
    np.testing.assert_array_equal(steps["action"], src["actions"])  # numeric demo order
    for key, src_key in (("image", "obs/agentview_rgb"), ("wrist_image", "obs/eye_in_hand_rgb")):
      stored = steps["observation"][key].astype(np.float32)
      flipped = np.stack([np.rot90(x, 2) for x in src[src_key]]).astype(np.float32)
      assert stored.shape == (len(src["actions"]), SIZE, SIZE, 3)
      assert np.abs(stored - flipped).mean() < 4.0, (name, demo, key)
      assert np.abs(stored - src[src_key]).mean() > 40.0  # and not the unflipped frames
    state = np.concatenate([src["obs/ee_states"], src["obs/gripper_states"]], -1)
    np.testing.assert_allclose(steps["observation"]["state"], state, rtol=1e-6)
    np.testing.assert_allclose(steps["observation"]["joint_state"], src["obs/joint_states"],
                               rtol=1e-6)
    np.testing.assert_array_equal(steps["reward"], src["rewards"].astype(np.float32))
    np.testing.assert_array_equal(steps["discount"], 1.0)
    last = np.arange(len(src["actions"])) == len(src["actions"]) - 1
    np.testing.assert_array_equal(steps["is_first"], np.arange(len(last)) == 0)
    np.testing.assert_array_equal(steps["is_last"], last)
    np.testing.assert_array_equal(steps["is_terminal"], last)
    assert {s.decode() for s in steps["language_instruction"]} == {hdf5_demos.INSTRUCTIONS[name]}


def test_noop_filtering(filtered, demo_dir):
  builder, episodes = read_episodes(filtered)
  assert filtered.endswith(os.path.join("goal_filtered", "1.0.0"))
  assert builder.info.metadata["noop_steps_dropped"] == hdf5_demos.NOOPS_DROPPED
  total = sum(hdf5_demos.DEMO_FILES[name][demo][0] for name, demo in EPISODES)
  assert sum(len(e["steps"]["reward"]) for e in episodes) == total - hdf5_demos.NOOPS_DROPPED
  assert len(builder.info.splits["train"].shard_lengths) == math.ceil(len(EPISODES) / 2)
  for episode, (name, demo) in zip(episodes, EPISODES):
    src = source(demo_dir, name, demo)
    length, noops, _ = hdf5_demos.DEMO_FILES[name][demo]
    keep = np.asarray([t not in noops for t in range(length)])
    steps = episode["steps"]
    np.testing.assert_array_equal(steps["action"], src["actions"][keep])
    assert steps["reward"].sum() == src["rewards"].sum() == 1.0  # the return is kept ...
    assert steps["reward"][-1] == 1.0 and steps["is_last"][-1] and steps["is_terminal"][-1]
    assert steps["observation"]["image"].shape == (keep.sum(), 24, 24, 3)
    resized = convert_lib._resize(src["obs/agentview_rgb"][keep][:, ::-1, ::-1], 24)
    assert np.abs(steps["observation"]["image"].astype(np.float32) - resized).mean() < 4.0
  assert EPISODES[1][1] == 2 and 7 in hdf5_demos.DEMO_FILES[EPISODES[1][0]][2][1]  # last step


def test_noop_rule_matches_openvla():
  a = np.zeros((6, 7), np.float32)
  a[:, 6] = [-1, -1, 1, 1, 1, -1]
  a[1, 0] = 0.5  # moves
  a[4, 0] = 5e-5  # below the threshold
  # step 0: still (first step: the norm test alone); 2: still but the gripper changes vs the last
  # kept step (1); 3, 4: still, same gripper; 5: gripper changes.
  np.testing.assert_array_equal(convert_lib.noop_mask(a), [1, 0, 0, 1, 1, 0])
  b = a.copy()
  b[1, 6] = 1  # last kept step before 3 is now 1 (gripper +1) ... step 2 is then a no-op
  np.testing.assert_array_equal(convert_lib.noop_mask(b), [1, 0, 1, 1, 1, 0])


def test_dropped_rewards_keep_the_return():
  rewards = np.asarray([0.5, 0, 0, 2, 0, 1], np.float32)
  keep = np.asarray([0, 1, 1, 0, 1, 0], bool)
  # step 0 -> first kept (1); step 3 -> kept step 2; step 5 -> kept step 4.
  np.testing.assert_allclose(convert_lib.kept_rewards(rewards, keep), [0.5, 2.0, 1.0])


@pytest.mark.parametrize("filename,instruction", [
    ("KITCHEN_SCENE10_put_the_black_bowl_in_the_top_drawer_demo.hdf5",
     "put the black bowl in the top drawer"),
    ("LIVING_ROOM_SCENE2_SCENE_pick_up_it_demo.hdf5", "pick up it"),
    ("pick_up_the_black_bowl_on_the_plate_demo.hdf5", "pick up the black bowl on the plate"),
    ("/a/b/open_drawer.hdf5", "open drawer"),
])
def test_instruction_from_filename(filename, instruction):
  assert convert_lib.instruction_from_filename(filename) == instruction


# ---------------------------------------------------------------------------------------------
# Bad input: in-process for the messages, plus the CLI contract (exit 2, one line, no traceback).


def _bad_file(tmp_path, kind):
  path = str(tmp_path / "KITCHEN_SCENE1_do_it_demo.hdf5")
  if kind == "not_hdf5":
    with open(path, "w", encoding="utf-8") as f:
      f.write("not an hdf5 file\n")
    return path
  hdf5_demos.write_file(path, {0: (4, (), ()), 3: (5, (), ())}, SIZE)
  if kind == "truncated":
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
    return path
  with h5py.File(path, "a") as f:
    demo = f["data/demo_3"]
    if kind == "no_data":
      f.move("data", "episodes")
    elif kind == "missing_key":
      del demo["obs/joint_states"]
    elif kind == "gray_images":
      del demo["obs/eye_in_hand_rgb"]
      demo["obs/eye_in_hand_rgb"] = np.zeros((5, SIZE, SIZE, 1), np.uint8)
    elif kind == "nan_action":
      demo["actions"][2, 1] = np.nan
    elif kind == "short":
      for name in ("demo_0", "demo_3"):
        for key, value in hdf5_demos.demo_arrays(0, 1).items():
          del f["data"][name][key]
          f["data"][name][key] = value
  return path


BAD_FILES = {  # kind -> substrings of the message (besides the file's path)
    "not_hdf5": ["not a readable HDF5 file"],
    "truncated": ["not a readable HDF5 file", "truncated"],
    "no_data": ["no 'data' group", "episodes"],
    "missing_key": ["data/demo_3", "'obs/joint_states'", "agentview_rgb, ee_pos, ee_states"],
    "gray_images": ["data/demo_3/obs/eye_in_hand_rgb", "(5, 16, 16, 1)"],
    "nan_action": ["data/demo_3/actions", "NaN", "step 2"],
    "short": ["at least 2 steps"],
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_are_refused(tmp_path, kind):
  path = _bad_file(tmp_path, kind)
  out = str(tmp_path / "out")
  with pytest.raises(UserError) as raised:
    convert_lib.convert(path, out, image_size=SIZE, log=lambda *_: None)
  message = str(raised.value)
  for text in [path] + BAD_FILES[kind]:
    assert text in message, (text, message)
  assert not os.path.exists(out)  # checked before anything is written


def test_bad_paths_are_refused(tmp_path, converted, demo_dir):
  empty = tmp_path / "empty"
  empty.mkdir()
  (tmp_path / "a_file").write_text("x")
  existing_root = os.path.dirname(os.path.dirname(converted[0]))
  cases = [
      ((str(tmp_path / "nope"), str(tmp_path / "o")), [str(tmp_path / "nope"), "does not exist"]),
      ((str(empty), str(tmp_path / "o")), [str(empty), "no .hdf5 files"]),
      ((demo_dir, str(tmp_path / "a_file" / "out")), ["a_file", "not a directory"]),
      ((demo_dir, existing_root), [converted[0], "already exists"]),
  ]
  before = snapshot(converted[0])
  for args, expected in cases:
    with pytest.raises(UserError) as raised:
      convert_lib.convert(*args, image_size=SIZE, log=lambda *_: None)
    for text in expected:
      assert text in str(raised.value), (text, str(raised.value))
  assert snapshot(converted[0]) == before
  with pytest.raises(UserError, match="not a valid dataset name"):
    convert_lib.convert(demo_dir, str(tmp_path / "o"), name="Bad-Name", log=lambda *_: None)


def test_failure_while_writing_leaves_nothing(tmp_path, demo_dir, monkeypatch):
  original, calls = convert_lib.demo_example, []

  def failing(plan, group, image_size):
    calls.append(plan.demo)
    if len(calls) == 3:
      raise UserError(f"{plan.path}: data/{plan.demo} could not be read")
    return original(plan, group, image_size)

  monkeypatch.setattr(convert_lib, "demo_example", failing)
  out = tmp_path / "out"
  with pytest.raises(UserError, match="could not be read"):
    convert_lib.convert(demo_dir, str(out), image_size=SIZE, log=lambda *_: None)
  assert len(calls) == 3
  assert not out.exists()  # the directories it made are removed again


@pytest.mark.slow
def test_cli(tmp_path, repo_root, converted, demo_dir):
  bad = _bad_file(tmp_path, "missing_key")
  existing_root = os.path.dirname(os.path.dirname(converted[0]))
  cases = {
      "missing_key": ["--input", bad, "--output", str(tmp_path / "o1")],
      "existing": ["--input", demo_dir, "--output", existing_root, "--image_size", str(SIZE)],
      "ok": ["--input", demo_dir, "--output", str(tmp_path / "o2"), "--image_size", str(SIZE),
             "--filter_noops", "--shard_episodes", "4"],
  }
  before = snapshot(converted[0])
  env = dict(os.environ, PYTHONPATH=repo_root)

  def run(argv):
    return subprocess.run([sys.executable, "-m", "rrd_jax.cli.convert_libero", *argv],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=120,
                          check=False)

  with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    results = dict(zip(cases, pool.map(run, cases.values())))
  for name, expected in (("missing_key", [bad, "data/demo_3", "obs/joint_states"]),
                         ("existing", [converted[0], "already exists"])):
    result = results[name]
    detail = f"{name}: exit={result.returncode}\n{result.stderr}"
    assert result.returncode == 2, detail
    assert "Traceback" not in result.stderr, detail
    lines = message_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), detail
    for text in expected:
      assert text in lines[0], detail
  assert snapshot(converted[0]) == before
  assert not os.path.exists(tmp_path / "o1")
  ok = results["ok"]
  assert ok.returncode == 0, ok.stderr
  version_dir = str(tmp_path / "o2" / "libero_goal_no_noops" / "1.0.0")
  assert ok.stdout.splitlines()[-1] == version_dir
  index = rlds.build_index(rlds.open_builder(version_dir), rlds.FeatureKeys())
  assert len(index) == len(EPISODES)
  assert index.lengths.sum() == sum(hdf5_demos.DEMO_FILES[n][d][0] for n, d in EPISODES) - 4
