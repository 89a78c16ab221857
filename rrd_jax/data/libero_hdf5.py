"""Convert native LIBERO HDF5 demo files into an RLDS dataset with the LIBERO RLDS features.

python -m rrd_jax.cli.convert_libero --input DIR_OR_FILES --output OUT [--image_size 256]
    [--filter_noops] [--name NAME] [--shard_episodes N]

--input is a directory of *.hdf5 files or a comma-separated list of files (and/or directories).
Each file holds `data/demo_<n>/{actions, rewards, dones, obs/{agentview_rgb, eye_in_hand_rgb,
ee_states, gripper_states, joint_states}}`; demos are written file by file, in numeric demo order.

The result, OUT/<name>/1.0.0/, opens with tfds.builder_from_directory and has exactly the
features of `embedded.libero_features(image_size)` (docs/LIBERO_RLDS.md):
  image, wrist_image   agentview_rgb / eye_in_hand_rgb rotated 180° (img[::-1, ::-1]), resized to
                       image_size if needed, JPEG
  state                ee_states (6) + gripper_states (2); joint_state: joint_states (7)
  action, reward       as stored; discount 1; is_first / is_last on the first / last step,
                       is_terminal on the last step when the demo's last `dones` entry is set
  language_instruction from the file name: the words after the `SCENE<n>` token of
                       `..._SCENE<n>_<words>_demo.hdf5` (else the whole stem), underscores -> spaces
  episode_metadata/file_path  the absolute path of the source HDF5 file

--filter_noops drops steps as OpenVLA's regenerate_libero_dataset.py does: step t is a no-op when
norm(action[t][:-1]) < 1e-4 and its gripper command equals that of the last KEPT step (the first
step: the norm test alone). A dropped step's reward is added to the last kept step before it (to
the first kept step when none precedes it), so each episode's return is kept and a reward on the
final step stays on the final kept step. Demos with fewer than 2 (kept) steps are skipped.

All inputs are checked (low-dimensional arrays read, images' shapes only) before anything is
written; the dataset is built in a hidden temporary directory next to the version directory and
renamed into place when complete. One demo is in memory at a time.
"""

import contextlib
import dataclasses
import io
import math
import os
import re
import shutil
import sys
import tempfile
import types

import h5py
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from rrd_jax.data import embedded
from rrd_jax.util.errors import UserError

DATASET_VERSION = "1.0.0"
DEFAULT_NAME = "libero_converted"
NOOP_THRESHOLD = 1e-4
MIN_STEPS = 2
IMAGE_KEYS = {"image": "obs/agentview_rgb", "wrist_image": "obs/eye_in_hand_rgb"}
# key -> trailing shape of one step (None: an image, checked separately).
REQUIRED_KEYS = {
    "obs/agentview_rgb": None,
    "obs/eye_in_hand_rgb": None,
    "obs/ee_states": (6,),
    "obs/gripper_states": (2,),
    "obs/joint_states": (7,),
    "actions": (7,),
    "rewards": (),
    "dones": (),
}
FINITE_KEYS = ("actions", "rewards", "obs/ee_states", "obs/gripper_states", "obs/joint_states")
_DEMO = re.compile(r"^demo_(\d+)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODULE = "rrd_jax.data.libero_hdf5"


@dataclasses.dataclass(frozen=True)
class DemoPlan:
  """One demo to write: where it is and which of its steps are kept."""
  path: str  # absolute path of the HDF5 file
  demo: str  # group name, e.g. "demo_7"
  instruction: str
  keep: np.ndarray  # [T] bool


def instruction_from_filename(path):
  """`..._SCENE3_put_the_bowl_on_the_plate_demo.hdf5` -> 'put the bowl on the plate'."""
  stem = os.path.splitext(os.path.basename(path))[0]
  if stem.endswith("_demo"):
    stem = stem[:-len("_demo")]
  words = stem.split("_")
  scene = [i for i, word in enumerate(words) if re.fullmatch(r"SCENE\d*", word)]
  if scene:
    words = words[scene[-1] + 1:]
  return " ".join(w for w in words if w)


def noop_mask(actions, threshold=NOOP_THRESHOLD):
  """[T] bool, True for the steps OpenVLA's no-op filter drops (compared with the last kept
  step)."""
  dropped = np.zeros(len(actions), bool)
  previous = None
  for t, action in enumerate(actions):
    still = np.linalg.norm(action[:-1]) < threshold
    if still and (previous is None or action[-1] == previous[-1]):
      dropped[t] = True
    else:
      previous = action
  return dropped


def kept_rewards(rewards, keep):
  """Rewards of the kept steps; each dropped step's reward goes to the last kept step before it
  (or the first kept step when none precedes it), so the sum is unchanged."""
  kept = np.flatnonzero(keep)
  target = np.maximum(np.searchsorted(kept, np.arange(len(rewards)), side="right") - 1, 0)
  return np.bincount(target, weights=np.asarray(rewards, np.float64),
                     minlength=len(kept)).astype(np.float32)


def default_name(inputs, filter_noops):
  """The TFDS name of the output: from the input directory's name, else DEFAULT_NAME."""
  items = [i for i in inputs.split(",") if i.strip()]
  name = ""
  if len(items) == 1 and os.path.isdir(os.path.expanduser(items[0].strip())):
    base = os.path.basename(os.path.normpath(os.path.abspath(os.path.expanduser(items[0].strip()))))
    name = re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_")
    if name and not name[0].isalpha():
      name = "libero_" + name
  name = name or DEFAULT_NAME
  if filter_noops and not name.endswith("_no_noops"):
    name += "_no_noops"
  return name


def list_input_files(inputs):
  """The HDF5 files named by --input (a directory's *.hdf5 sorted by name; list order kept)."""
  items = [i.strip() for i in str(inputs).split(",") if i.strip()]
  if not items:
    raise UserError("--input is required (a directory of .hdf5 files or a comma-separated list)")
  files = []
  for item in items:
    path = os.path.abspath(os.path.expanduser(item))
    if not os.path.exists(path):
      raise UserError(f"input path {item} does not exist")
    if os.path.isdir(path):
      found = sorted(n for n in os.listdir(path) if n.lower().endswith((".hdf5", ".h5"))
                     and os.path.isfile(os.path.join(path, n)))
      if not found:
        raise UserError(f"input directory {item} holds no .hdf5 files")
      files += [os.path.join(path, n) for n in found]
    else:
      files.append(path)
  return list(dict.fromkeys(files))


def _group_keys(group):
  return ", ".join(sorted(group.keys())) or "none"


def _open_hdf5(path):
  try:
    return h5py.File(path, "r")
  except OSError as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f"{path} is not a readable HDF5 file (truncated or not HDF5: {reason})"
                    ) from None


def _read(path, demo_group, key):
  try:
    return demo_group[key][()]
  except (OSError, RuntimeError, ValueError) as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f"{path}: data/{demo_group.name.rsplit('/', 1)[-1]}/{key} could not be read "
                    f"(truncated or corrupt file: {reason})") from None


def _check_demo(path, name, group):
  """Checks keys, shapes and finiteness of one demo; returns its actions ([T, 7] float32)."""
  where = f"{path}: data/{name}"
  for key in REQUIRED_KEYS:
    parent, _, leaf = key.rpartition("/")
    if parent and parent not in group:
      raise UserError(f"{where} has no '{parent}' group (needed for '{key}'; it has: "
                      f"{_group_keys(group)})")
    holder = group[parent] if parent else group
    if leaf not in holder:
      raise UserError(f"{where} has no '{key}' (available {('in ' + parent) if parent else 'keys'}"
                      f": {_group_keys(holder)})")
  steps = group["actions"].shape[0] if group["actions"].ndim else 0
  for key, tail in REQUIRED_KEYS.items():
    shape = tuple(group[key].shape)
    if tail is None:
      if len(shape) != 4 or shape[-1] != 3:
        raise UserError(f"{where}/{key} has shape {shape}; expected (steps, height, width, 3) RGB "
                        "images")
      if group[key].dtype != np.uint8:
        raise UserError(f"{where}/{key} has dtype {group[key].dtype}; expected uint8 images")
    elif shape[1:] != tail and not (tail == () and shape[1:] == (1,)):
      expected = "(steps" + "".join(f", {d}" for d in tail) + ")"
      raise UserError(f"{where}/{key} has shape {shape}; expected {expected}")
    if shape[:1] != (steps,):
      raise UserError(f"{where}/{key} has {shape[0] if shape else 0} steps but 'actions' has "
                      f"{steps}")
  for key in FINITE_KEYS:
    values = np.asarray(_read(path, group, key), np.float64)
    if not np.all(np.isfinite(values)):
      bad = int(np.argmax(~np.isfinite(values).reshape(steps, -1).all(-1)))
      raise UserError(f"{where}/{key} has NaN or infinite values (first at step {bad})")
  return np.asarray(_read(path, group, "actions"), np.float32)


def plan_conversion(files, filter_noops, log=print):
  """Checks every file and demo (no images read); returns ([DemoPlan], stats)."""
  plans, short, dropped = [], 0, 0
  for path in files:
    with _open_hdf5(path) as f:
      if "data" not in f:
        raise UserError(f"{path} has no 'data' group (top-level keys: {_group_keys(f)}); "
                        "expected a LIBERO demo file with data/demo_<n>")
      demos = sorted(((int(m.group(1)), k) for k in f["data"].keys() if (m := _DEMO.match(k))))
      if not demos:
        raise UserError(f"{path} has no demo_<n> groups in 'data' (it has: "
                        f"{_group_keys(f['data'])})")
      instruction = instruction_from_filename(path)
      for _, name in demos:
        actions = _check_demo(path, name, f["data"][name])
        keep = ~noop_mask(actions) if filter_noops else np.ones(len(actions), bool)
        if keep.sum() < MIN_STEPS:
          short += 1
          continue
        dropped += int((~keep).sum())
        plans.append(DemoPlan(path, name, instruction, keep))
  if short:
    log(f"Skipping {short} demo(s) with fewer than {MIN_STEPS} steps"
        f"{' after no-op filtering' if filter_noops else ''}.")
  if not plans:
    raise UserError(f"no demo in {', '.join(files[:3])}{' ...' if len(files) > 3 else ''} has "
                    f"at least {MIN_STEPS} steps{' after no-op filtering' if filter_noops else ''}")
  return plans, {"demos": len(plans), "short_demos_skipped": short, "noop_steps_dropped": dropped,
                 "steps": int(sum(p.keep.sum() for p in plans))}


def _resize(frames, size):
  """[T, H, W, 3] uint8 -> [T, size, size, 3] uint8 (bicubic), one frame at a time."""
  if frames.shape[1:3] == (size, size):
    return frames
  from PIL import Image  # pylint: disable=import-outside-toplevel
  return np.stack([np.asarray(Image.fromarray(frame).resize((size, size), Image.BICUBIC))
                   for frame in frames])


def demo_example(plan, group, image_size):
  """The RLDS example (numpy) of one demo."""
  keep = plan.keep
  read = lambda key: _read(plan.path, group, key)
  images = {name: _resize(read(key)[keep][:, ::-1, ::-1], image_size)
            for name, key in IMAGE_KEYS.items()}
  state = np.concatenate([read("obs/ee_states"), read("obs/gripper_states")], -1)[keep]
  dones = np.asarray(read("dones")).reshape(-1)
  length = int(keep.sum())
  last = np.arange(length) == length - 1
  return {
      "steps": {
          "observation": {"image": images["image"], "wrist_image": images["wrist_image"],
                          "state": state.astype(np.float32),
                          "joint_state": read("obs/joint_states")[keep].astype(np.float32)},
          "action": read("actions")[keep].astype(np.float32),
          "reward": kept_rewards(np.asarray(read("rewards")).reshape(-1), keep),
          "discount": np.ones(length, np.float32),
          "is_first": np.arange(length) == 0,
          "is_last": last,
          "is_terminal": last & bool(dones[-1]),
          "language_instruction": [plan.instruction] * length,
      },
      "episode_metadata": {"file_path": plan.path},
  }


class LiberoHdf5(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """LIBERO demos converted from native HDF5 files (rrd_jax.data.libero_hdf5)."""

  __module__ = _MODULE  # tfds finds package data by module name; `python -m` would say __main__
  name = DEFAULT_NAME
  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: "Converted from LIBERO HDF5 by rrd_jax."}

  def __init__(self, *, plans, image_size, metadata, progress, **kwargs):
    self._plans, self._image_size = plans, image_size
    self._metadata, self._progress = metadata, progress
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=embedded.libero_features(self._image_size),
        description=__doc__, disable_shuffling=True,
        metadata=tfds.core.MetadataDict(self._metadata))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    # With shuffling disabled, tfds writes in key order and, past 1 GB, spills examples to 1000
    # on-disk buckets by key range: increasing int keys spread over [0, 2**128) keep the demo
    # order and keep each bucket (sorted in memory when the shards are written) small.
    step = 2**128 // max(1, len(self._plans))
    handle, handle_path = None, None
    try:
      for index, plan in enumerate(self._plans):
        if plan.path != handle_path:
          if handle is not None:
            handle.close()
          handle, handle_path = _open_hdf5(plan.path), plan.path
        yield index * step, demo_example(plan, handle["data"][plan.demo], self._image_size)
        self._progress.update(1)
    finally:
      if handle is not None:
        handle.close()


def builder_class(name):
  """LiberoHdf5 under the TFDS name `name` (the shard prefix and the directory OUT/<name>)."""
  return types.new_class(f"LiberoHdf5_{name}", (LiberoHdf5,), {"skip_registration": True},
                         lambda ns: ns.update({"name": name, "__module__": _MODULE}))


def _check_output(output, name):
  """The version directory to create; refuses an existing one or an unwritable location."""
  if not _NAME.match(name):
    raise UserError(f"--name {name!r} is not a valid dataset name (lowercase letters, digits and "
                    "underscores, starting with a letter)")
  output = os.path.abspath(os.path.expanduser(output))
  version_dir = os.path.join(output, name, DATASET_VERSION)
  if os.path.exists(version_dir):
    raise UserError(f"output {version_dir} already exists; choose another --output or --name")
  existing = output
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UserError(f"output {output} cannot be created: {existing} is not a directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UserError(f"output {output} is not writable (no write permission on {existing})")
  return version_dir


def convert(inputs, output, image_size=256, filter_noops=False, name="", shard_episodes=0,
            log=print):
  """Converts the HDF5 files named by `inputs`; returns the new dataset version directory."""
  if image_size < 1:
    raise UserError(f"--image_size must be positive, got {image_size}")
  if shard_episodes < 0:
    raise UserError(f"--shard_episodes must be >= 0, got {shard_episodes}")
  files = list_input_files(inputs)
  name = name or default_name(inputs, filter_noops)
  version_dir = _check_output(output, name)
  plans, stats = plan_conversion(files, filter_noops, log)
  log(f"Converting {stats['demos']} demos ({stats['steps']} steps) from {len(files)} file(s)"
      + (f", {stats['noop_steps_dropped']} no-op steps dropped" if filter_noops else "") + ".")

  name_dir = os.path.dirname(version_dir)
  created = []  # directories this call makes, innermost first (removed again if left empty)
  missing = name_dir
  while not os.path.exists(missing):
    created.append(missing)
    missing = os.path.dirname(missing)
  try:
    os.makedirs(name_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{DATASET_VERSION}.incomplete-", dir=name_dir)
  except OSError as e:
    raise UserError(f"output {version_dir} cannot be created ({e.strerror or e})") from None
  metadata = {"source_files": files, "filter_noops": bool(filter_noops),
              "image_size": int(image_size), **stats}
  bar = tqdm.tqdm(total=len(plans), desc="convert", unit="demo", dynamic_ncols=True,
                  disable=not sys.stderr.isatty())
  try:
    builder = builder_class(name)(plans=plans, image_size=image_size, metadata=metadata,
                                   progress=bar, data_dir=tmp_dir)
    num_shards = math.ceil(len(plans) / shard_episodes) if shard_episodes else None
    tfds.disable_progress_bar()
    with contextlib.redirect_stdout(io.StringIO()):  # tfds prints its own status lines
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(num_shards=num_shards))
    bar.close()
    os.rename(os.path.join(tmp_dir, name, DATASET_VERSION), version_dir)
  except OSError as e:
    raise UserError(f"writing {version_dir} failed ({e.strerror or e})") from None
  finally:
    bar.close()
    shutil.rmtree(tmp_dir, ignore_errors=True)
    for directory in created:
      with contextlib.suppress(OSError):
        os.rmdir(directory)  # only if left empty
  log(f"Wrote {stats['demos']} episodes ({stats['steps']} steps) to:")
  log(version_dir)
  return version_dir
