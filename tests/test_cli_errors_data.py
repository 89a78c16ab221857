"""The CLIs' bad-input contract for bad datasets, config values and output paths, checked on the
real commands run as subprocesses (see test_cli_errors.py for the pattern and the product rule).

Bad datasets are small variants of the embedded LIBERO-schema dataset, written once per module
(a builder subclass edits episodes as they are generated: NaN/inf values, 1-step episodes, a
1-channel image...), and byte-level damage to shard copies (garbage in a record, a cut tail, a
deleted shard). Every case is one subprocess (~5 s of imports each); they run a few at a time, once
per module. Two cases train (1 step of the MLP model): `short_episodes_trains`, whose run the
relabel/predict cases then use, and `damaged_skipped`, one run over a dataset with a corrupt
record, a truncated shard and NaN/inf episodes, skipped and counted with data.skip_bad_episodes.
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from rrd_jax.data import embedded, rlds
from tests.helpers import damage_frames
from tests.test_cli_errors import TINY_FLAGS, assert_one_sentence_error, snapshot

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)

SMALL = embedded.EmbeddedParams(num_episodes=10, min_length=4, max_length=7, image_size=16,
                                seed=3, num_shards=2)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# The runs that must succeed: one step of the MLP model, no held-out evaluation (cheapest).
ONE_STEP = ["--config.model.kind=mlp", "--config.train.num_steps=1",
            "--config.data.eval_fraction=0"]


class BadLibero(embedded.RrdSyntheticLibero, skip_registration=True):
  """The embedded dataset with `edit(index, episode)` applied to each generated episode (None
  drops it) and optionally other features."""

  pkg_dir_path = epath.Path(os.path.dirname(embedded.__file__))  # metadata files of the parent

  def __init__(self, *, edit=None, features=None, **kwargs):
    self._edit, self._features = edit, features
    super().__init__(**kwargs)

  def _info(self):
    if self._features is None:
      return super()._info()
    return self.dataset_info_from_configs(features=self._features(self._params.image_size))

  def _generate_examples(self):
    for index in range(self._params.num_episodes):
      episode = embedded.generate_episode(self._params, index)
      episode = self._edit(index, episode) if self._edit else episode
      if episode is not None:
        yield index, episode


class FlatData(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A TFDS dataset that is not RLDS: flat features, no `steps`."""

  VERSION = tfds.core.Version("1.0.0")
  pkg_dir_path = epath.Path(os.path.dirname(embedded.__file__))

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        "observation_vector": tfds.features.Tensor(shape=(3,), dtype=np.float32),
        "label": tfds.features.Scalar(dtype=np.int64)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(4):
      yield i, {"observation_vector": np.full(3, i, np.float32), "label": i}


def _prepare(builder):
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(num_shards=SMALL.num_shards))
  return str(builder.data_dir)


def _variant(root, name, **kwargs):
  return _prepare(BadLibero(params=SMALL, data_dir=os.path.join(root, name), **kwargs))


def _set(key, index, value):
  """An edit writing `value` into steps/<key>[1] (flat index `index`) of episode 2."""
  def edit(episode_index, episode):
    if episode_index == 2:
      node = episode["steps"]
      *parents, leaf = key.split("/")
      for part in parents:
        node = node[part]
      node[leaf] = np.array(node[leaf])
      node[leaf].reshape(len(node[leaf]), -1)[1, index] = value
    return episode
  return edit


def _nan_everywhere(episode_index, episode):
  """Episode 2: NaN reward, 5: inf state, 7: NaN action."""
  steps = episode["steps"]
  if episode_index == 2:
    steps["reward"][1] = np.nan
  elif episode_index == 5:
    steps["observation"]["state"][2, 0] = np.inf
  elif episode_index == 7:
    steps["action"][0, 3] = -np.nan
  return episode


def _cut(tree, length):
  if isinstance(tree, dict):
    return {k: _cut(v, length) for k, v in tree.items()}
  return tree[:length]


def _short_episodes(only):
  """Episodes 1, 4, 7 (or all, with `only`) cut to 1 step, or to 0 steps for episodes 4, 8."""
  def edit(episode_index, episode):
    if only or episode_index in (1, 4, 7):
      episode["steps"] = _cut(episode["steps"], 0 if episode_index in (4, 8) else 1)
    return episode
  return edit


def _odd_image_features(image_size):
  """observation/image: a 1-channel JPEG image; observation/wrist_image: a uint8 Tensor."""
  base = embedded.libero_features(image_size)
  steps = dict(base["steps"].feature.items())
  observation = dict(steps["observation"].items())
  observation["image"] = tfds.features.Image(shape=(image_size, image_size, 1), dtype=np.uint8,
                                             encoding_format="jpeg")
  observation["wrist_image"] = tfds.features.Tensor(shape=(image_size, image_size, 3),
                                                    dtype=np.uint8)
  steps["observation"] = tfds.features.FeaturesDict(observation)
  return tfds.features.FeaturesDict({**dict(base.items()), "steps": tfds.features.Dataset(steps)})


def _gray(episode_index, episode):
  del episode_index
  observation = episode["steps"]["observation"]
  observation["image"] = observation["image"][..., :1]
  return episode


def _copy_dataset(source, root, name):
  target = os.path.join(root, name, *source.rstrip(os.sep).split(os.sep)[-2:])
  shutil.copytree(source, target)
  return target


def _shards(dataset_dir):
  return sorted(os.path.join(dataset_dir, n) for n in os.listdir(dataset_dir) if ".tfrecord-" in n)


def _episode_name(episode_index):
  return f"episode_{episode_index:05d}.hdf5".encode()


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def _shard_holding(dataset_dir, episode_index):
  """The shard file that holds the embedded episode `episode_index` (found by its file_path)."""
  found = [p for p in _shards(dataset_dir) if _episode_name(episode_index) in _read(p)]
  assert len(found) == 1, (dataset_dir, episode_index, found)
  return found[0]


def _records(shard):
  """[(offset, payload)] of a TFRecord shard."""
  data = _read(shard)
  return [(offset, data[offset + 12: offset + 12 + int.from_bytes(data[offset:offset + 8],
                                                                     "little")])
          for offset in rlds.record_offsets(shard)]


def _corrupt_record(shard, offset):
  """Garbage over the middle of the payload of the record at `offset` (framing intact)."""
  with open(shard, "r+b") as f:
    f.seek(offset)
    length = int.from_bytes(f.read(8), "little")
    f.seek(offset + 12 + length // 2)
    f.write(b"\xde\xad\xbe\xef" * 16)


def _truncate(shard):
  """Cuts the last 100 bytes of a shard (the tail of its last record)."""
  os.truncate(shard, os.path.getsize(shard) - 100)


def _empty_dataset(template_dir, root):
  """A copy of a dataset's metadata whose only split has 0 episodes (one empty shard)."""
  target = os.path.join(root, "empty", "bad_libero", "1.0.0")
  os.makedirs(target)
  for name in ("features.json", "metadata.json"):
    shutil.copy(os.path.join(template_dir, name), target)
  with open(os.path.join(template_dir, "dataset_info.json"), encoding="utf-8") as f:
    info = json.load(f)
  info["splits"] = [dict(info["splits"][0], shardLengths=["0"], numBytes="0")]
  with open(os.path.join(target, "dataset_info.json"), "w", encoding="utf-8") as f:
    json.dump(info, f)
  open(os.path.join(target, "bad_libero-train.tfrecord-00000-of-00001"), "wb").close()
  return target


class Env:
  """Paths shared by the cases (filled in by the `cli` fixture)."""


def _make_datasets(e, tiny_dataset_dir):
  root = e.datasets = os.path.join(e.tmp, "datasets")
  e.tiny = _copy_dataset(tiny_dataset_dir, root, "tiny")
  e.flat = _prepare(FlatData(data_dir=os.path.join(root, "flat")))
  e.odd_images = _variant(root, "odd_images", features=_odd_image_features, edit=_gray)
  e.nan_reward = _variant(root, "nan_reward", edit=_set("reward", 0, np.nan))
  e.inf_state = _variant(root, "inf_state", edit=_set("observation/state", 3, -np.inf))
  e.nan_action = _variant(root, "nan_action", edit=_set("action", 6, np.nan))
  e.short_some = _variant(root, "short_some", edit=_short_episodes(only=False))
  e.short_only = _variant(root, "short_only", edit=_short_episodes(only=True))
  e.empty = _empty_dataset(e.nan_reward, root)

  # Copies of the tiny dataset with one damaged shard: garbage in the middle of a record (framing
  # intact: only the record's CRC shows it), a cut tail, a shard file deleted.
  e.corrupt = _copy_dataset(tiny_dataset_dir, root, "corrupt")
  e.corrupt_shard = _shards(e.corrupt)[1]
  _corrupt_record(e.corrupt_shard, rlds.record_offsets(e.corrupt_shard)[1])
  e.truncated = _copy_dataset(tiny_dataset_dir, root, "truncated")
  e.truncated_shard = _shards(e.truncated)[-1]
  _truncate(e.truncated_shard)
  e.missing_shard_dataset = _copy_dataset(tiny_dataset_dir, root, "missing_shard")
  e.missing_shard = _shards(e.missing_shard_dataset)[0]
  os.remove(e.missing_shard)

  # Frames that do not decode: every frame of every episode (the first batch meets one), or one
  # frame of two episodes (garbage, a truncated JPEG: left out with data.skip_bad_episodes).
  e.bad_frames = _copy_dataset(tiny_dataset_dir, root, "bad_frames")
  for shard in _shards(e.bad_frames):
    for record in range(len(rlds.record_offsets(shard))):
      damage_frames(shard, record, "all")
  e.some_bad_frames = _copy_dataset(tiny_dataset_dir, root, "some_bad_frames")
  damage_frames(_shards(e.some_bad_frames)[0], 0, [1], "garbage")
  damage_frames(_shards(e.some_bad_frames)[1], 1, [2], "truncated")

  # All of it in one dataset (for one skip_bad_episodes run): NaN/inf in episodes 2, 5, 7, a
  # corrupt record in the first shard (one without NaN) and the second shard's tail cut.
  e.damaged = _variant(root, "damaged", edit=_nan_everywhere)
  first, last = _shards(e.damaged)
  nan_names = [_episode_name(i) for i in (2, 5, 7)]
  offset = next(o for o, payload in _records(first) if not any(n in payload for n in nan_names))
  _corrupt_record(first, offset)
  lost_nan = sum(n in _records(last)[-1][1] for n in nan_names)  # the cut record may be one
  _truncate(last)
  e.damaged_skipped = ("skipped episodes: 2 unreadable" +
                       (f", {3 - lost_nan} with NaN/inf values" if lost_nan < 3 else ""))


def _cases(e):
  """name -> (module, argv, substrings the error line must contain, cwd or None)."""
  fresh = lambda name: os.path.join(e.tmp, "workdirs", name)
  ds = lambda d: f"--config.data.dataset_dir={d}"

  def train(name, dataset_dir, *flags, workdir=None):
    return ("rrd_jax.cli.train", ["--workdir", workdir or fresh(name), "--config",
                              "configs/libero_rrd.py", ds(dataset_dir), *TINY_FLAGS, *flags])

  def case(name, dataset_dir, flags, expected, workdir=None):
    return name, (*train(name, dataset_dir, *flags, workdir=workdir), expected, None)

  def tool(name, module, argv, expected, cwd=None):
    return name, (module, argv, expected, cwd)

  skip = "--config.data.skip_bad_episodes=True"
  legacy_args = ["--epochs", "1", "--cycles", "2", "--rrd_batch_size", "16",
                 "--rrd_sample_size", "4", "--libero_image_size", "40"]
  cases = [
      # A TFDS dataset that is not RLDS.
      case("not_rlds", e.flat, [], [e.flat, "'steps'", "label, observation_vector"]),
      # Configured feature keys the dataset lacks (the available ones of that kind are listed).
      case("missing_image_key", e.tiny, ["--config.data.image_key=observation/nope"],
           ["data.image_key", "'steps/observation/nope'",
            "RGB image step features are: observation/image, observation/wrist_image"]),
      case("missing_reward_key", e.tiny, ["--config.data.reward_key=nope_reward"],
           ["data.reward_key", "'steps/nope_reward'",
            "numeric scalar step features are: discount, reward"]),
      case("missing_wrist_key", e.tiny, ["--config.model.use_wrist=True",
                                         "--config.data.wrist_image_key=observation/nope_wrist"],
           ["data.wrist_image_key", "'steps/observation/nope_wrist'",
            "RGB image step features are: observation/image, observation/wrist_image"]),
      # An image feature that is not (H, W, 3), or not an image at all.
      case("one_channel_image", e.odd_images, [],
           [e.odd_images, "'steps/observation/image'", "(16, 16, 1)"]),
      case("tensor_image", e.odd_images, ["--config.data.image_key=observation/wrist_image"],
           [e.odd_images, "'steps/observation/wrist_image'", "Tensor", "(16, 16, 3)"]),
      # Damaged shards: refused naming the shard (skipped with data.skip_bad_episodes: below).
      case("corrupt_shard", e.corrupt, [], [e.corrupt_shard, "skip_bad_episodes"]),
      case("truncated_shard", e.truncated, [], [e.truncated_shard, "truncated"]),
      case("missing_shard", e.missing_shard_dataset, [], [e.missing_shard, "skip_bad_episodes"]),
      # Episodes shorter than 2 steps are always left out (counted); none left is an error.
      case("short_episodes_trains", e.short_some, ONE_STEP,
           ["skipped episodes: 3 shorter than 2 steps"], workdir=e.run_dir),
      case("only_short_episodes", e.short_only, [],
           [e.short_only, "no usable episodes", "10 shorter than 2 steps"]),
      # NaN/inf values: refused naming the key and shard, or skipped (counted).
      case("nan_reward", e.nan_reward, [],
           [_shard_holding(e.nan_reward, 2), "'steps/reward'", "skip_bad_episodes"]),
      case("inf_state", e.inf_state, [],
           [_shard_holding(e.inf_state, 2), "'steps/observation/state'"]),
      case("nan_action", e.nan_action, [], [_shard_holding(e.nan_action, 2), "'steps/action'"]),
      # A corrupt record, a truncated shard and NaN/inf episodes, all skipped and counted.
      case("damaged_skipped", e.damaged, [skip, *ONE_STEP], [e.damaged_skipped]),
      # Undecodable frames: named (shard, episode, step), or skipped and counted.
      case("undecodable_frames", e.bad_frames, [],
           [e.bad_frames, "has an undecodable frame at step", "'steps/observation/image'",
            "skip_bad_episodes"]),
      case("bad_frames_skipped", e.some_bad_frames,
           [skip, "--config.train.num_steps=1", "--config.data.eval_fraction=0"],
           ["skipped episodes: 2 with undecodable frames"]),
      # A split with no episodes.
      case("empty_dataset", e.empty, [], [e.empty, "no episodes"]),
      # Invalid config values.
      case("returns_kind_bogus", e.tiny, ["--config.returns.kind=bogus"],
           ["returns.kind", "'bogus'"]),
      case("negatives_ratio_1.5", e.tiny, ["--config.returns.negatives_ratio=1.5"],
           ["returns.negatives_ratio", "1.5"]),
      case("negatives_without_instruction", e.tiny, ["--config.returns.negatives_ratio=0.5"],
           ["returns.negatives_ratio=0.5", "model.use_instruction"]),
      case("time_penalty_negative", e.tiny, ["--config.returns.time_penalty=-1.0"],
           ["returns.time_penalty", "-1"]),
      case("embedded_task_bogus", "", ["--config.data.embedded_task=bogus",
                                       f"--config.data.embedded_dir={e.embedded_dir}"],
           ["data.embedded_task", "'bogus'"]),
      case("checkpoint_keep_0", e.tiny, ["--config.checkpoint.keep=0"],
           ["checkpoint.keep", "got 0"]),
      case("mesh_data_3", e.tiny, ["--config.mesh.data=3"], ["mesh.data", "got 3"]),
      # Output paths that cannot be used.
      case("workdir_is_a_file", e.tiny, [], [e.workdir_file], workdir=e.workdir_file),
      case("workdir_not_writable", e.tiny, [], [e.readonly_workdir], workdir=e.readonly_workdir),
      tool("relabel_out_is_a_dataset", "rrd_jax.cli.relabel",
           ["--workdir", e.run_dir, "--out", e.short_some],
           [e.short_some, "already holds a dataset"]),
      tool("relabel_dataset_missing", "rrd_jax.cli.relabel",
           ["--workdir", e.run_dir, "--dataset_dir", e.missing_dataset, "--out", e.never_written],
           [e.missing_dataset, "does not exist"]),
      tool("predict_dataset_missing", "rrd_jax.cli.predict",
           ["--workdir", e.run_dir, "--dataset_dir", e.missing_dataset, "--out", e.never_written],
           [e.missing_dataset, "does not exist"]),
      tool("legacy_dataset_missing", "rrd_jax.cli.pytorch_flags",
           ["--libero_dataset_path", e.missing_dataset, *legacy_args],
           ["--libero_dataset_path", e.missing_dataset, "does not exist"], cwd=e.legacy_cwd),
      tool("legacy_unknown_flag", "rrd_jax.cli.pytorch_flags",
           ["--libero_dataset_path", e.tiny, "--bogus_flag", "3", *legacy_args],
           ["--bogus_flag"], cwd=e.legacy_cwd),
  ]
  return dict(cases)


CASE_NAMES = [
    "not_rlds", "missing_image_key", "missing_reward_key", "missing_wrist_key",
    "one_channel_image", "tensor_image", "corrupt_shard", "truncated_shard", "missing_shard",
    "short_episodes_trains", "only_short_episodes", "nan_reward", "inf_state", "nan_action",
    "damaged_skipped", "undecodable_frames", "bad_frames_skipped", "empty_dataset", "returns_kind_bogus", "negatives_ratio_1.5",
    "negatives_without_instruction", "time_penalty_negative", "embedded_task_bogus",
    "checkpoint_keep_0", "mesh_data_3", "workdir_is_a_file", "workdir_not_writable",
    "relabel_out_is_a_dataset", "relabel_dataset_missing", "predict_dataset_missing",
    "legacy_dataset_missing", "legacy_unknown_flag",
]
# Cases that must succeed (exit 0) and print the given counts.
SUCCEEDS = ("short_episodes_trains", "damaged_skipped", "bad_frames_skipped")
# Cases that fail once training has started (the run's config.json is written by then).
FAIL_IN_TRAINING = ("undecodable_frames",)
# Cases that need the finished run of `short_episodes_trains`.
NEEDS_RUN = ("relabel_out_is_a_dataset", "relabel_dataset_missing", "predict_dataset_missing")
# Root ignores directory permissions.
SKIPPED = ("workdir_not_writable",) if IS_ROOT else ()


@pytest.fixture(scope="module")
def cli(tiny_dataset_dir, repo_root, tmp_path_factory):
  """Writes the bad datasets, runs every case; (env, cases, {name: CompletedProcess})."""
  e = Env()
  e.tmp = str(tmp_path_factory.mktemp("cli_errors_data"))
  e.run_dir = os.path.join(e.tmp, "run")
  e.embedded_dir = os.path.join(e.tmp, "embedded_cache")
  e.missing_dataset = os.path.join(e.tmp, "no_such_dataset", "1.0.0")
  e.never_written = os.path.join(e.tmp, "never_written")
  e.legacy_cwd = os.path.join(e.tmp, "legacy_cwd")
  e.workdir_file = os.path.join(e.tmp, "workdir_file")
  e.readonly = os.path.join(e.tmp, "readonly")
  e.readonly_workdir = os.path.join(e.readonly, "run")
  os.makedirs(e.legacy_cwd)
  os.makedirs(e.readonly)
  with open(e.workdir_file, "w", encoding="utf-8") as f:
    f.write("not a directory\n")
  _make_datasets(e, tiny_dataset_dir)
  e.before = {"datasets": snapshot(e.datasets), "tiny": snapshot(tiny_dataset_dir)}
  os.chmod(e.readonly, 0o500)

  cases = _cases(e)
  assert list(cases) == CASE_NAMES
  env = dict(os.environ, PYTHONPATH=repo_root, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one CPU device (mesh_data_3)

  def run(name):
    module, argv, _, cwd = cases[name]
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd or repo_root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)

  try:
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
      # The run the relabel/predict cases need goes first; they are queued once it is done.
      first = [n for n in CASE_NAMES if n not in NEEDS_RUN + SKIPPED]
      first.remove("short_episodes_trains")
      futures = {"short_episodes_trains": pool.submit(run, "short_episodes_trains")}
      futures.update({name: pool.submit(run, name) for name in first})
      futures["short_episodes_trains"].result()
      e.before["run"] = snapshot(e.run_dir)
      futures.update({name: pool.submit(run, name) for name in NEEDS_RUN})
      results = {name: future.result() for name, future in futures.items()}
  finally:
    os.chmod(e.readonly, 0o700)
  return e, cases, results


def _detail(cases, results, name):
  result = results[name]
  return (f"argv={cases[name][1]}\nexit={result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
          f"stderr:\n{result.stderr[-3000:]}")


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if n not in SUCCEEDS])
def test_bad_input_is_one_sentence_exit_2(cli, name):
  if name in SKIPPED:
    pytest.skip("running as root: directory permissions are not enforced")
  _, cases, results = cli
  result, expected, detail = results[name], cases[name][2], _detail(cases, results, name)
  assert_one_sentence_error(result, expected, detail)


@pytest.mark.parametrize("name", SUCCEEDS)
def test_skipped_episodes_are_counted(cli, name):
  """Short episodes (always) and damaged ones (data.skip_bad_episodes) are left out, the run
  goes on, and the log and the run's config.json say how many."""
  e, cases, results = cli
  result, expected, detail = results[name], cases[name][2], _detail(cases, results, name)
  assert "Traceback" not in result.stderr, detail
  assert result.returncode == 0, detail
  for text in expected:
    assert text in result.stdout, f"{text!r} not in the log\n{detail}"
  workdir = cases[name][1][cases[name][1].index("--workdir") + 1]
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    skipped = json.load(f)["dataset"]["skipped"]
  assert skipped == expected[0], skipped


def test_failed_runs_write_nothing(cli):
  """Refused commands leave no files behind: no run files in their fresh --workdir (but a run that
  fails once training has started keeps its config.json), no output directory, nothing under the
  read-only directory, the legacy cwd or the embedded cache."""
  e, _, _ = cli
  workdirs = os.path.join(e.tmp, "workdirs")
  written = {name: sorted(snapshot(os.path.join(workdirs, name)))
             for name in os.listdir(workdirs) if name not in SUCCEEDS + FAIL_IN_TRAINING}
  assert not {name: files for name, files in written.items() if files}, written
  assert not os.path.exists(e.never_written)
  assert not os.listdir(e.readonly)
  assert not os.listdir(e.legacy_cwd)
  assert not os.path.exists(e.embedded_dir) or not snapshot(e.embedded_dir)


def test_existing_files_are_untouched(cli, tiny_dataset_dir):
  """No case changed a dataset (the relabel --out target included), the finished run, or the
  file given as --workdir."""
  e, _, _ = cli
  assert snapshot(e.datasets) == e.before["datasets"]
  assert snapshot(tiny_dataset_dir) == e.before["tiny"]
  assert snapshot(e.run_dir) == e.before["run"]
  with open(e.workdir_file, encoding="utf-8") as f:
    assert f.read() == "not a directory\n"
