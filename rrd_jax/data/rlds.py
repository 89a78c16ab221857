"""Opening RLDS datasets and indexing their episodes for random access.

An RLDS/TFDS dataset stores one episode per TFRecord record. The index records, for every episode,
which shard holds it and at what byte offset, plus its length, return, file_path and instruction,
so the pipeline can read just the sampled episodes (and decode just the sampled frames) while host
memory stays bounded by a few numbers per episode, whatever the dataset's size.
"""

import concurrent.futures
import dataclasses
import hashlib
import os
import re
import struct
import sys

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import tqdm
from tensorflow.python.lib.io import tf_record as _tf_record  # random access, CRC-checked
from tensorflow_datasets.core import example_parser

from rrd_jax.util.errors import UserError

_HEADER = struct.Struct("<QI")  # TFRecord framing: uint64 length, uint32 masked crc of length


@dataclasses.dataclass(frozen=True)
class FeatureKeys:
  """Where each input lives, as '/'-separated paths inside `steps` (file_path: inside the episode)."""
  image: str = "observation/image"
  wrist_image: str = "observation/wrist_image"
  proprio: str = "observation/state"
  action: str = "action"
  reward: str = "reward"
  instruction: str = "language_instruction"
  file_path: str = "episode_metadata/file_path"

  def frame(self, name):
    """The step feature of a ModelInputs frame ("image" or "wrist_image")."""
    return self.image if name == "image" else self.wrist_image

  @classmethod
  def from_config(cls, data_config):
    return cls(image=data_config.image_key, wrist_image=data_config.wrist_image_key,
               proprio=data_config.proprio_key, action=data_config.action_key,
               reward=data_config.reward_key, instruction=data_config.instruction_key,
               file_path=data_config.file_path_key)


def plain_graph(function):
  """`function` for tf.data's map without AutoGraph: our map functions have no tensor-dependent
  Python control flow, and AutoGraph's source parsing only adds warnings (and can misread a source
  file edited while a job runs)."""
  return tf.autograph.experimental.do_not_convert(function)


def _flatten(nested, prefix=""):
  flat = {}
  for key, value in nested.items():
    path = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, path + "/"))
    else:
      flat[path] = value
  return flat


def open_builder(dataset_dir):
  """`tfds.builder_from_directory` with one-sentence errors for paths that are not RLDS datasets."""
  dataset_dir = os.path.expanduser(str(dataset_dir))
  if not os.path.exists(dataset_dir):
    raise UserError(f"dataset directory {dataset_dir} does not exist")
  if not os.path.isdir(dataset_dir):
    raise UserError(f"dataset path {dataset_dir} is not a directory")
  if not os.path.exists(os.path.join(dataset_dir, "dataset_info.json")):
    found = sorted(d for d in os.listdir(dataset_dir)
                   if os.path.isdir(os.path.join(dataset_dir, d)))
    hint = f" (it holds {', '.join(found[:5])}; pass a version directory such as .../1.0.0)" if found else ""
    raise UserError(f"{dataset_dir} is not a TFDS/RLDS dataset version directory: "
                    f"no dataset_info.json{hint}")
  try:
    builder = tfds.builder_from_directory(dataset_dir)
  except Exception as e:  # tfds raises many kinds for malformed metadata
    raise UserError(f"{dataset_dir} could not be opened as a TFDS dataset: "
                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
  if builder.info.file_format != tfds.core.FileFormat.TFRECORD:
    raise UserError(f"{dataset_dir} is stored as {builder.info.file_format.value}; "
                    "rrd_jax reads TFRecord RLDS datasets")
  if "steps" not in builder.info.features:
    raise UserError(f"{dataset_dir} is not an RLDS dataset: it has no 'steps' feature "
                    f"(features: {', '.join(sorted(builder.info.features.keys()))})")
  return builder


def serialized_specs(builder, step_keys, episode_keys=()):
  """The tfds serialized-feature specs restricted to the given keys; errors list the available ones."""
  info = builder.info.features.get_serialized_info()
  flat_steps = _flatten(info["steps"])
  flat_episode = {k: v for k, v in _flatten(info).items() if not k.startswith("steps/")}
  specs = {}
  for key in step_keys:
    if key not in flat_steps:
      raise UserError(f"feature 'steps/{key}' not found in {builder.data_dir}; available step "
                      f"features: {', '.join(sorted(flat_steps))}")
    specs["steps/" + key] = flat_steps[key]
  for key in episode_keys:
    if key not in flat_episode:
      raise UserError(f"feature '{key}' not found in {builder.data_dir}; available episode "
                      f"features: {', '.join(sorted(flat_episode)) or 'none'}")
    specs[key] = flat_episode[key]
  return specs


def flat_features(features, prefix=""):
  """[(key, feature)] of the leaf tfds features, keys '/'-joined ('steps/observation/image')."""
  if isinstance(features, tfds.features.Sequence):  # includes tfds.features.Dataset (RLDS steps)
    return flat_features(features.feature, prefix)
  if isinstance(features, tfds.features.FeaturesDict):
    leaves = []
    for key, feature in features.items():
      leaves += flat_features(feature, f"{prefix}{key}/")
    return leaves
  return [(prefix.rstrip("/"), features)]


FEATURE_KINDS = {"image": "RGB image", "vector": "numeric vector", "number": "numeric scalar",
                 "text": "text"}


def _kind(feature):
  if isinstance(feature, tfds.features.Image):
    return "image" if tuple(feature.shape)[-1:] == (3,) else None
  if isinstance(feature, tfds.features.Text):
    return "text"
  dtype = np.dtype(feature.np_dtype)
  if not np.issubdtype(dtype, np.number):  # (flags such as is_first are bool: not listed)
    return None
  return {0: "number", 1: "vector"}.get(len(feature.shape))


def step_features_by_kind(builder):
  """{kind: sorted keys inside `steps`} for the kinds of FEATURE_KINDS."""
  out = {kind: [] for kind in FEATURE_KINDS}
  for key, feature in flat_features(builder.info.features["steps"]):
    kind = _kind(feature)
    if kind:
      out[kind].append(key)
  return {kind: sorted(keys) for kind, keys in out.items()}


def missing_step_feature(builder, key, kind, field):
  """The UserError for a configured step feature the dataset lacks, listing those of its kind."""
  found = step_features_by_kind(builder)[kind]
  optional = " (or set it to '' if the dataset has none)" if kind == "text" else ""
  return UserError(f"{field}: feature 'steps/{key}' not found in {builder.data_dir}; its "
                   f"{FEATURE_KINDS[kind]} step features are: {', '.join(found) or 'none'}"
                   f"{optional}")


def check_step_features(builder, keys):
  """The reward must be one number per step, the state and action one numeric vector per step:
  UserError naming the config field and the feature otherwise (a missing one: listing the
  dataset's features of its kind)."""
  present = _flatten(builder.info.features.get_serialized_info()["steps"])
  for key, field, kind in ((keys.reward, "data.reward_key", "number"),
                           (keys.proprio, "data.proprio_key", "vector"),
                           (keys.action, "data.action_key", "vector"),
                           (keys.instruction, "data.instruction_key", "text")):
    if key and key not in present:
      raise missing_step_feature(builder, key, kind, field)
  specs = serialized_specs(builder, [keys.reward, keys.proprio, keys.action])
  for key, field, rank, what in ((keys.reward, "data.reward_key", 1, "one number"),
                                 (keys.proprio, "data.proprio_key", 2, "a vector"),
                                 (keys.action, "data.action_key", 2, "a vector")):
    spec = specs["steps/" + key]
    dtype = np.dtype(spec.np_dtype)
    if len(spec.shape) != rank or not np.issubdtype(dtype, np.number):
      name = "string" if dtype.kind in "OSU" else dtype.name
      raise UserError(f"{field}: feature 'steps/{key}' in {builder.data_dir} must hold {what} "
                      f"per step, but holds {name} of shape {tuple(spec.shape[1:])}")


def make_parser(specs):
  """A function serialized Example -> dict of tensors for the given flat specs (images stay bytes)."""
  nested = {}
  for key, spec in specs.items():
    node = nested
    parts = key.split("/")
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = spec
  parser = example_parser.ExampleParser(nested)

  def parse(serialized):
    return _flatten(parser.parse_example(serialized))

  return parse


def image_shape(builder, key, field="data.image_key"):
  """The stored (H, W, C) of an image step feature, checking it is an RGB image."""
  feature = builder.info.features["steps"]
  for part in key.split("/"):
    children = feature.feature if isinstance(feature, tfds.features.Dataset) else feature
    if not isinstance(children, tfds.features.FeaturesDict) or part not in children.keys():
      raise missing_step_feature(builder, key, "image", field)
    feature = children[part]
  if not isinstance(feature, tfds.features.Image):
    shape = getattr(feature, "shape", None)
    kind = type(feature).__name__ + (f" of shape {tuple(shape)}" if isinstance(shape, (tuple, list))
                                     else "")
    raise UserError(f"feature 'steps/{key}' in {builder.data_dir} is a {kind}, not an image")
  shape = feature.shape
  if len(shape) != 3 or shape[-1] != 3:
    raise UserError(f"image feature 'steps/{key}' in {builder.data_dir} has shape {shape}; "
                    "expected (height, width, 3)")
  return shape


def record_offsets(path):
  """Byte offsets of every record in a TFRecord file, read from the framing only (no payload)."""
  offsets = []
  try:
    size = os.path.getsize(path)
    f = open(path, "rb")  # pylint: disable=consider-using-with
  except OSError as e:
    raise UserError(f"TFRecord shard {path} cannot be read ({e.strerror}); set "
                    "data.skip_bad_episodes=True to skip its episodes") from None
  with f:
    position = 0
    while position < size:
      header = f.read(_HEADER.size)
      if len(header) < _HEADER.size:
        raise UserError(f"TFRecord shard {path} is truncated at byte {position}")
      (length, _), = [_HEADER.unpack(header)]
      offsets.append(position)
      position += _HEADER.size + length + 4
      f.seek(position)
  if position != size:
    raise UserError(f"TFRecord shard {path} is truncated (last record ends past byte {size})")
  return offsets


def read_record(path, offset):
  """The payload of the TFRecord record that starts at `offset` of `path`."""
  with open(path, "rb") as f:
    f.seek(offset)
    (length, _), = [_HEADER.unpack(f.read(_HEADER.size))]
    return f.read(length)


@dataclasses.dataclass(frozen=True)
class IndexReport:
  """What build_index left out (only with skip_bad, except short episodes, always left out)."""
  unreadable: int = 0  # records that could not be read or parsed
  non_finite: int = 0  # episodes with NaN/inf rewards, states or actions
  short: int = 0  # episodes with fewer than MIN_EPISODE_LENGTH steps
  bad_frames: int = 0  # episodes with a camera frame that does not decode (checked with skip_bad)

  def describe(self):
    parts = [f"{n} {what}" for n, what in ((self.unreadable, "unreadable"),
                                           (self.non_finite, "with NaN/inf values"),
                                           (self.bad_frames, "with undecodable frames"),
                                           (self.short, f"shorter than {MIN_EPISODE_LENGTH} steps"))
             if n]
    return "skipped episodes: " + ", ".join(parts) if parts else ""


MIN_EPISODE_LENGTH = 2  # RRD needs s and s' (and the L-RD correction two steps)


@dataclasses.dataclass
class EpisodeIndex:
  """A few numbers per episode, in dataset order (splits sorted by name, shards in order)."""
  dataset_dir: str
  shard_paths: list  # [S] str
  shard_ids: np.ndarray  # [N] int32
  offsets: np.ndarray  # [N] int64
  lengths: np.ndarray  # [N] int64
  returns: np.ndarray  # [N] float64, sum of the reward feature
  file_paths: list  # [N] str
  instructions: list  # [N] str
  splits: list  # [N] str
  report: IndexReport = IndexReport()  # episodes left out while indexing
  moments: dict = None  # MOMENT_KEYS -> [N, dim] float64 per-episode sums (input_statistics)

  def __len__(self):
    return len(self.lengths)


def op_error_text(error):
  """The useful part of a TensorFlow OpError message (no function-node or op decorations)."""
  text = re.sub(r"\{\{[^}]*\}\}\s*", "", error.message.splitlines()[0] if error.message else "")
  text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _read_shard(path, summarize, skip_bad, expected=None):
  """Summaries of every record of a shard and its record offsets; with skip_bad, unreadable
  records (a corrupt record, a truncated tail, a missing file) are dropped and counted instead of
  raising. `expected`: the shard's record count per dataset_info.json (to count lost records)."""
  if skip_bad and not os.access(path, os.R_OK):
    return [], [], expected or 1
  try:
    offsets = record_offsets(path)
    truncated = 0
  except UserError:
    if not skip_bad:
      raise
    offsets, truncated = _complete_record_offsets(path), 1
  try:
    dataset = tf.data.TFRecordDataset(path).map(summarize, num_parallel_calls=tf.data.AUTOTUNE)
    rows = list(dataset.take(len(offsets)).as_numpy_iterator()) if not truncated else None
  except tf.errors.OpError as e:
    if not skip_bad:
      raise UserError(f"TFRecord shard {path} could not be read ({op_error_text(e)}); set "
                      "data.skip_bad_episodes=True to skip unreadable episodes") from None
    rows = None
  if rows is not None and len(rows) == len(offsets):
    return rows, offsets, truncated
  if rows is not None and not skip_bad:
    raise UserError(f"TFRecord shard {path} has {len(rows)} readable records but "
                    f"{len(offsets)} framed records")
  kept_rows, kept_offsets = [], []
  reader = _tf_record.tf_record_random_reader(path)  # checks each record's CRCs
  for offset in offsets:  # record by record, keeping the readable ones
    try:
      record, _ = reader.read(offset)
      kept_rows.append(_to_numpy(summarize(tf.constant(record))))
      kept_offsets.append(offset)
    except (tf.errors.OpError, ValueError, IndexError):
      pass
  bad = len(offsets) - len(kept_rows) + truncated
  return kept_rows, kept_offsets, max(bad, (expected or 0) - len(kept_rows))


def _check_frame(data):
  """The decoded size of one encoded frame (JPEGs decoded at 1/8 scale: the whole compressed
  stream is still read); raises like decoding it would."""
  return tf.cond(tf.io.is_jpeg(data),
                 lambda: tf.size(tf.io.decode_jpeg(data, channels=3, ratio=8)),
                 lambda: tf.size(tf.io.decode_image(data, channels=3, expand_animations=False)))


def undecodable(path, offsets, parse_frames):
  """The offsets (of records in TFRecord file `path`) of the episodes with a frame that does not
  decode. parse_frames: serialized episode -> {key: [T] encoded frames}. Every frame is decoded,
  in parallel, once."""

  def check(offset):
    record = tf.numpy_function(lambda o: read_record(path, int(o)), [offset], tf.string,
                               stateful=False)
    frames = parse_frames(tf.ensure_shape(record, []))
    sizes = [tf.map_fn(_check_frame, f, fn_output_signature=tf.int32) for f in frames.values()]
    return offset, tf.add_n([tf.reduce_sum(s) for s in sizes])

  dataset = tf.data.Dataset.from_tensor_slices(np.asarray(offsets, np.int64))
  dataset = dataset.map(plain_graph(check), num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
  decoded = {int(offset) for offset, _ in dataset.as_numpy_iterator()}
  return [o for o in offsets if int(o) not in decoded]


def _to_numpy(tree):
  return {k: v.numpy() for k, v in tree.items()}


def _complete_record_offsets(path):
  """Offsets of the records that fit entirely in a (truncated) TFRecord file."""
  offsets, size, position = [], os.path.getsize(path), 0
  with open(path, "rb") as f:
    while position + _HEADER.size <= size:
      f.seek(position)
      (length, _), = [_HEADER.unpack(f.read(_HEADER.size))]
      end = position + _HEADER.size + length + 4
      if end > size:
        break
      offsets.append(position)
      position = end
  return offsets


def _episode_summarizer(builder, keys):
  """serialized episode -> the numbers build_index keeps (length, return, finiteness, input
  moments, instruction, file path), as a tf.data map function."""
  step_keys = [keys.reward, keys.proprio, keys.action]
  step_keys += [keys.instruction] if keys.instruction else []
  episode_keys = [keys.file_path] if keys.file_path else []
  parse = make_parser(serialized_specs(builder, step_keys, episode_keys))

  def summarize(serialized):
    parsed = parse(serialized)
    rewards = tf.cast(parsed["steps/" + keys.reward], tf.float64)
    finite = [tf.reduce_all(tf.math.is_finite(tf.cast(parsed["steps/" + k], tf.float64)))
              for k in (keys.reward, keys.proprio, keys.action)]
    summary = {"length": tf.shape(rewards)[0], "return": tf.reduce_sum(rewards),
               "finite": tf.stack(finite)}
    summary.update(_moments(parsed["steps/" + keys.proprio], parsed["steps/" + keys.action]))
    if keys.instruction:
      instructions = parsed["steps/" + keys.instruction]
      summary["instruction"] = tf.cond(tf.size(instructions) > 0, lambda: instructions[0],
                                       lambda: tf.constant(""))
    summary["file_path"] = parsed[keys.file_path] if keys.file_path else tf.constant("")
    return summary

  return summarize


def _read_shards(files, summarize, skip_bad):
  """(split, path, _read_shard's result) for each (split, path, expected records) in order; the
  shards are read side by side (TensorFlow releases the GIL while it reads and parses)."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
    futures = [pool.submit(_read_shard, path, summarize, skip_bad, expected)
               for _, path, expected in files]
    try:
      for (split, path, _), future in zip(
          tqdm.tqdm(files, desc="index", unit="shard", dynamic_ncols=True,
                    disable=not sys.stderr.isatty() or len(files) < 4), futures):
        yield split, path, future.result()
    finally:
      for future in futures:
        future.cancel()


def build_index(builder, keys, splits=None, skip_bad=False, frame_keys=()):
  """Scans the dataset once (lengths, returns, file paths, instructions; no images decoded).

  Episodes shorter than MIN_EPISODE_LENGTH are left out (counted). A NaN/inf reward, state or
  action, or an unreadable record, raises UserError, unless skip_bad: then the episode is left out
  and counted (index.report). With skip_bad, the frames of the step features `frame_keys` (the
  cameras a run reads) are decoded once too, and episodes with one that does not decode are left
  out and counted; without it, such a frame is named when the pipeline meets it.
  """
  splits = sorted(builder.info.splits.keys()) if splits is None else list(splits)
  # Traced once for every shard (tf.data would otherwise trace a plain function per shard).
  summarize = tf.function(plain_graph(_episode_summarizer(builder, keys)), autograph=False,
                          input_signature=[tf.TensorSpec([], tf.string)])
  parse_frames = make_parser(serialized_specs(builder, frame_keys)) if skip_bad else None
  shard_paths, shard_ids, offsets, columns = [], [], [], []
  unreadable = non_finite = short = bad_frames = 0
  files = [(split, instruction.filename, getattr(instruction, "examples_in_shard", None))
           for split in splits if builder.info.splits[split].num_examples  # (tfds warns on 0)
           for instruction in builder.info.splits[split].file_instructions]
  records = 0
  for split, path, (rows, shard_offsets, bad) in _read_shards(files, summarize, skip_bad):
    unreadable += bad
    records += len(rows) + bad
    shard_id = len(shard_paths)
    shard_paths.append(path)
    bad = set(undecodable(path, shard_offsets, parse_frames)) if frame_keys and skip_bad else ()
    for row, offset in zip(rows, shard_offsets):
      if not row["finite"].all():
        if not skip_bad:
          bad_key = (keys.reward, keys.proprio, keys.action)[int(np.argmin(row["finite"]))]
          episode = row["file_path"].decode("utf-8", "replace") if row["file_path"] else ""
          raise UserError(f"an episode in {path}{f' ({episode})' if episode else ''} has NaN or "
                          f"infinite values in 'steps/{bad_key}'; set "
                          "data.skip_bad_episodes=True to skip such episodes")
        non_finite += 1
      elif offset in bad:
        bad_frames += 1
      elif row["length"] < MIN_EPISODE_LENGTH:
        short += 1
      else:
        shard_ids.append(shard_id)
        offsets.append(offset)
        columns.append((split, row))
  report = IndexReport(unreadable=unreadable, non_finite=non_finite, short=short,
                       bad_frames=bad_frames)
  if not records:
    raise UserError(f"dataset {builder.data_dir} holds no episodes (splits: "
                    f"{', '.join(splits) or 'none'})")
  if not columns:
    detail = f" ({report.describe()})" if report.describe() else ""
    raise UserError(f"dataset {builder.data_dir} has no usable episodes{detail}")
  decode = lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b)
  index = EpisodeIndex(
      dataset_dir=str(builder.data_dir), shard_paths=shard_paths,
      shard_ids=np.asarray(shard_ids, np.int32), offsets=np.asarray(offsets, np.int64),
      lengths=np.asarray([r["length"] for _, r in columns], np.int64),
      returns=np.asarray([r["return"] for _, r in columns], np.float64),
      file_paths=[decode(r["file_path"]) for _, r in columns],
      instructions=[decode(r.get("instruction", b"")) for _, r in columns],
      splits=[s for s, _ in columns], report=report,
      moments={k: np.stack([r[k] for _, r in columns]) for k in MOMENT_KEYS})
  return index


INPUT_FEATURES = ("state", "action", "delta")  # the model's low-dim inputs: s, a, s - s'
MOMENT_KEYS = tuple(f"{name}_{power}" for name in INPUT_FEATURES for power in ("sum", "sumsq"))


def _moments(proprio, action):
  """Per-episode sums and sums of squares (float64, per dimension) of the state, the action and
  s - s' (s' = s at the last step, as the pipeline gives it)."""
  state = tf.reshape(tf.cast(proprio, tf.float64), [tf.shape(proprio)[0], -1])
  action = tf.reshape(tf.cast(action, tf.float64), [tf.shape(action)[0], -1])
  delta = state - tf.concat([state[1:], state[-1:]], 0)
  out = {}
  for name, x in zip(INPUT_FEATURES, (state, action, delta)):
    out[f"{name}_sum"] = tf.reduce_sum(x, 0)
    out[f"{name}_sumsq"] = tf.reduce_sum(tf.square(x), 0)
  return out


def input_statistics(index, ids, min_std=1e-6):
  """{state,action,delta}_{mean,std} (float32 [dim]) over every step of the episodes `ids`: the
  statistics a model with model.normalize_inputs standardises its inputs by. A dimension that
  never varies (std < min_std) keeps std 1."""
  ids = np.asarray(ids)
  steps = float(index.lengths[ids].sum())
  stats = {}
  for name in INPUT_FEATURES:
    mean = index.moments[f"{name}_sum"][ids].sum(0) / steps
    var = np.maximum(index.moments[f"{name}_sumsq"][ids].sum(0) / steps - mean**2, 0.0)
    std = np.sqrt(var)
    stats[f"{name}_mean"] = mean.astype(np.float32)
    stats[f"{name}_std"] = np.where(std < min_std, 1.0, std).astype(np.float32)
  return stats


def concatenate(indexes):
  """One index over several datasets' indexes (shards renumbered), in the given order."""
  first = indexes[0]
  shard_paths, shard_ids = [], []
  for index in indexes:
    shard_ids.append(index.shard_ids + len(shard_paths))
    shard_paths += index.shard_paths
  return EpisodeIndex(
      dataset_dir=first.dataset_dir if len(indexes) == 1 else
      ",".join(i.dataset_dir for i in indexes),
      shard_paths=shard_paths, shard_ids=np.concatenate(shard_ids).astype(np.int32),
      offsets=np.concatenate([i.offsets for i in indexes]),
      lengths=np.concatenate([i.lengths for i in indexes]),
      returns=np.concatenate([i.returns for i in indexes]),
      file_paths=sum((i.file_paths for i in indexes), []),
      instructions=sum((i.instructions for i in indexes), []),
      splits=sum((i.splits for i in indexes), []),
      moments={k: np.concatenate([i.moments[k] for i in indexes]) for k in MOMENT_KEYS})


def holdout_mask(file_paths, fraction):
  """True for held-out (evaluation) episodes, chosen by a hash of file_path.

  Several episodes may share a file_path (LIBERO stores one HDF5 file per task), so the hashed key
  is `file_path#k`, k counting earlier episodes with the same file_path in dataset order. At least
  one episode is held out when fraction > 0 and at least one is kept for training (a dataset of
  one episode holds out none).
  """
  seen = {}
  scores = []
  for path in file_paths:
    k = seen.get(path, 0)
    seen[path] = k + 1
    digest = hashlib.md5(f"{path}#{k}".encode("utf-8")).digest()
    scores.append(int.from_bytes(digest[:8], "little") / 2.0**64)
  scores = np.asarray(scores)
  mask = scores < fraction
  if len(mask) < 2:
    return np.zeros(len(mask), bool)  # a single episode is kept for training
  if fraction > 0 and not mask.any():
    mask[np.argmin(scores)] = True
  if mask.all() and len(mask) > 1:
    mask[np.argmax(scores)] = False
  return mask


def dataset_summary(index):
  """A JSON-able description of an index (for logs and config.json)."""
  return {"dataset_dir": index.dataset_dir, "episodes": len(index),
          "steps": int(index.lengths.sum()), "mean_length": float(index.lengths.mean()),
          "return_mean": float(index.returns.mean()), "return_std": float(index.returns.std())}
