"""tf.data pipelines over an indexed RLDS dataset.

Training: a Python generator walks the sampler's batch plans (a pure function of (seed, step)) and
emits one element per sampled episode; a parallel, order-preserving map reads that episode's record,
parses it with the images left as JPEG bytes, gathers the K sampled steps and decodes only those
frames; elements are batched to [episodes, K, ...]. Full-episode streams (evaluation, prediction)
use the same loader with every step of each episode selected.

The loops read these streams through `train_batches` / `episode_step_batches`: numpy batches where
an episode that cannot be loaded (an undecodable frame, an unreadable record) ends the stream with
one sentence naming its shard and episode, and whose tf.data iterators are deleted as soon as they
fail or are closed (and at exit at the latest), never by the interpreter's shutdown, where their
destructors would wait forever for worker threads that need the GIL.
"""

import atexit
import itertools
import weakref

import numpy as np
import tensorflow as tf

from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import returns, rlds
from rrd_jax.data.sampling import RRDSampler
from rrd_jax.util.errors import UserError

# Keep TensorFlow off accelerators: JAX owns them.
tf.config.set_visible_devices([], "GPU")


def resize_frame(image, size):
  """uint8 [..., H, W, 3] -> uint8 [..., size, size, 3]: antialiased bilinear, rounded. The one
  resize of every frame a reward model sees (training, prediction, rrd_jax.RewardModel)."""
  image = tf.image.resize(image, (size, size), antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


class EpisodeLoader:
  """Reads one episode record and returns the selected steps, decoded, as tensors [K, ...].

  targets: the return definition (rrd_jax/data/returns.py; default: the dataset's own rewards);
  "true_reward" is the dataset reward plus the episode's offset. component_ids: each episode's
  mixture component (default: all 0).
  """

  def __init__(self, builder, index, keys, inputs: ModelInputs, instruction_vocab=None,
               targets=None, component_ids=None):
    self.index = index
    self.targets = targets or returns.raw_targets(index)
    self.component_ids = (np.zeros(len(index), np.int32) if component_ids is None
                          else np.asarray(component_ids, np.int32))
    self.keys = keys
    self.inputs = inputs
    step_keys = [keys.proprio, keys.action, keys.reward]
    for frame in inputs.frames:
      rlds.image_shape(builder, keys.frame(frame), f"data.{frame}_key")
      step_keys.append(keys.frame(frame))
    self.parse = rlds.make_parser(rlds.serialized_specs(builder, step_keys))
    self.shard_paths = np.asarray(index.shard_paths)
    vocab = instruction_vocab or []
    self.instruction_ids = np.asarray(
        [vocab.index(s) if s in vocab else 0 for s in index.instructions], np.int32)

  def _read(self, episode_id):
    episode_id = int(episode_id)
    path = self.shard_paths[self.index.shard_ids[episode_id]]
    return rlds.read_record(path, int(self.index.offsets[episode_id]))

  def _decode(self, jpeg_bytes):  # [N] string -> [N, S, S, 3] uint8
    size = self.inputs.image_size

    def decode_one(data):
      return resize_frame(tf.io.decode_image(data, channels=3, expand_animations=False), size)

    return tf.map_fn(decode_one, jpeg_bytes, fn_output_signature=tf.TensorSpec((size, size, 3), tf.uint8))

  def load(self, episode_id, sample_indices):
    """Graph function: episode id [] int64, step indices [K] int32 -> dict of [K, ...] tensors."""
    raw = tf.numpy_function(self._read, [episode_id], tf.string, stateful=False)
    raw = tf.ensure_shape(raw, [])
    parsed = self.parse(raw)
    keys = self.keys
    proprio = parsed["steps/" + keys.proprio]
    length = tf.shape(proprio)[0]
    next_indices = tf.minimum(sample_indices + 1, length - 1)
    out = {
        "state": tf.gather(tf.cast(proprio, tf.float32), sample_indices),
        "next_state": tf.gather(tf.cast(proprio, tf.float32), next_indices),
        "action": tf.gather(tf.cast(parsed["steps/" + keys.action], tf.float32), sample_indices),
        "true_reward": tf.gather(tf.cast(parsed["steps/" + keys.reward], tf.float32), sample_indices)
                       + tf.gather(self.targets.reward_offsets, episode_id),
        "instruction_id": tf.fill(tf.shape(sample_indices),
                                  tf.gather(self.instruction_ids, episode_id)),
        "step": sample_indices,
    }
    if self.inputs.image:
      out["image"] = self._decode(tf.gather(parsed["steps/" + keys.image], sample_indices))
    if self.inputs.next_image:
      out["next_image"] = self._decode(tf.gather(parsed["steps/" + keys.image], next_indices))
    if self.inputs.wrist_image:
      out["wrist_image"] = self._decode(tf.gather(parsed["steps/" + keys.wrist_image], sample_indices))
    return out

  def problem(self, episode_id, indices):
    """Why episode `episode_id` fails to load at step `indices` (and their next steps), or None:
    the episode is read again and each of those frames decoded on its own, eagerly."""
    try:
      parsed = self.parse(tf.constant(self._read(episode_id)))
    except (OSError, ValueError, IndexError, tf.errors.OpError) as e:
      reason = rlds.op_error_text(e) if isinstance(e, tf.errors.OpError) else str(e)
      return f"cannot be read ({reason})"
    length = int(self.index.lengths[int(episode_id)])
    steps = sorted({int(t) for i in np.asarray(indices) for t in (i, min(i + 1, length - 1))})
    for frame in self.inputs.frames:
      key = self.keys.frame(frame)
      data = parsed["steps/" + key].numpy()
      for t in steps:
        try:
          tf.io.decode_image(data[t], channels=3, expand_animations=False)
        except tf.errors.OpError as e:
          return (f"has an undecodable frame at step {t} of 'steps/{key}' "
                  f"({rlds.op_error_text(e)})")
    return None

  def step_batches(self, episode_ids, *, batch_size):
    """Every step of `episode_ids`, decoded, in batches (episode_step_batches; the frame caches
    read episodes through this)."""
    return episode_step_batches(self, episode_ids, batch_size=batch_size)

  def load_error(self, suspects, failure):
    """The UserError for a stream that failed with `failure` (text): it names the first of
    `suspects` ((episode id, step indices) pairs, in stream order) that fails to load again."""
    for episode_id, indices in suspects:
      problem = self.problem(episode_id, indices)
      if problem:
        episode_id = int(episode_id)
        shard = self.shard_paths[self.index.shard_ids[episode_id]]
        name = self.index.file_paths[episode_id] or f"#{episode_id}"
        return UserError(f"episode {name} (record at byte {self.index.offsets[episode_id]} of "
                         f"TFRecord shard {shard}) {problem}; set data.skip_bad_episodes=True to "
                         "skip episodes with unreadable records or frames")
    return UserError(f"the input pipeline failed ({failure}), and none of the episodes it was "
                     "reading fails when read again; rerun the same command to resume")


_OPEN_STREAMS = weakref.WeakSet()


@atexit.register
def close_open_streams():
  """Deletes the tf.data iterators of streams still open, while their threads can still run."""
  for stream in list(_OPEN_STREAMS):
    stream.close()


def numpy_batches(dataset, loader, suspects):
  """`dataset`'s batches as numpy. suspects(position) -> the (episode id, step indices) pairs that
  batch `position` reads, in order: a batch that fails to load raises loader.load_error for them.
  The tf.data iterator is deleted when the stream fails, ends or is closed."""
  stream = _guarded(dataset, loader, suspects)
  _OPEN_STREAMS.add(stream)
  return stream


def _guarded(dataset, loader, suspects):
  iterator = dataset.as_numpy_iterator()
  try:
    for position in itertools.count():
      failure = None
      try:
        batch = next(iterator)
      except StopIteration:
        return
      except tf.errors.OpError as e:
        failure = rlds.op_error_text(e)  # (raised below, so no traceback keeps the iterator)
      if failure is not None:
        iterator = None
        raise loader.load_error(suspects(position), failure)
      yield batch
  finally:
    iterator = None


def _options(deterministic=True):
  options = tf.data.Options()
  options.deterministic = deterministic
  options.experimental_optimization.map_parallelization = True
  return options


class _TrainRows:
  """The elements of each training step: this process's rows of the step's batch plan."""

  def __init__(self, loader, episode_ids, options, process_index, process_count):
    self.loader, self.options = loader, options
    self.episode_ids = np.asarray(episode_ids, np.int64)
    self.sampler = RRDSampler(loader.index.lengths[self.episode_ids], options,
                              component_ids=loader.component_ids[self.episode_ids],
                              instruction_ids=loader.instruction_ids[self.episode_ids])
    global_batch = self.sampler.episodes_per_batch
    if global_batch % process_count or not 0 <= process_index < process_count:
      raise ValueError(f"episodes_per_batch {global_batch} must split evenly over {process_count} "
                       f"processes (process_index {process_index})")
    self.local_batch = global_batch // process_count
    self.rows = range(process_index * self.local_batch, (process_index + 1) * self.local_batch)

  def __call__(self, step):
    """[(episode id, sample indices, length, return, instruction id, negative)] of `step`."""
    plan, loader = self.sampler.plan(step), self.loader
    elements = []
    for row in self.rows:
      episode_id = self.episode_ids[plan.episode_ids[row]]
      negative = plan.negative is not None and plan.negative[row]
      instruction = (plan.instruction_ids[row] if plan.instruction_ids is not None
                     else loader.instruction_ids[episode_id])
      episode_return = (self.options.negative_return if negative
                        else loader.targets.returns[episode_id])
      elements.append((episode_id, plan.sample_indices[row], loader.index.lengths[episode_id],
                       np.float32(episode_return), np.int32(instruction), np.bool_(negative)))
    return elements


def train_dataset(loader, episode_ids, options, *, start_step=0, num_steps=None,
                  process_index=0, process_count=1, num_parallel_calls=tf.data.AUTOTUNE,
                  prefetch=2):
  """Batches for steps start_step, start_step+1, ... sampled from `episode_ids` (a subset).

  options: the sampling.SamplerOptions (component ids and instruction ids come from the loader).
  Negatives (options.negatives_ratio > 0) carry another task's instruction_id, return
  options.negative_return and true_reward negative_return / T on every step; `negative` marks
  them. Each process yields its contiguous slice of every global batch plan:
  [B / process_count, K, ...].
  """
  rows = _TrainRows(loader, episode_ids, options, process_index, process_count)
  return _train_dataset(rows, start_step, num_steps, num_parallel_calls, prefetch)


def train_batches(loader, episode_ids, options, *, start_step=0, num_steps=None,
                  process_index=0, process_count=1, num_parallel_calls=tf.data.AUTOTUNE):
  """train_dataset's batches as a numpy stream (numpy_batches: bad episodes named)."""
  rows = _TrainRows(loader, episode_ids, options, process_index, process_count)
  dataset = _train_dataset(rows, start_step, num_steps, num_parallel_calls, prefetch=2)
  return numpy_batches(dataset, loader, lambda position: [
      (element[0], element[1]) for element in rows(start_step + position)])


def _train_dataset(rows, start_step, num_steps, num_parallel_calls, prefetch):
  loader, negative_return = rows.loader, rows.options.negative_return
  end_step = None if num_steps is None else start_step + num_steps

  def generate():
    step = start_step
    while end_step is None or step < end_step:
      yield from rows(step)
      step += 1

  signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([rows.sampler.sample_size], tf.int32),
               tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.float32),
               tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.bool))

  def load(episode_id, sample_indices, length, episode_return, instruction_id, negative):
    element = loader.load(episode_id, sample_indices)
    negative_reward = tf.fill(tf.shape(sample_indices),
                              tf.cast(negative_return / tf.cast(length, tf.float64), tf.float32))
    element.update(episode_id=episode_id, episode_length=tf.cast(length, tf.int32),
                   episode_return=episode_return, negative=negative,
                   instruction_id=tf.fill(tf.shape(sample_indices), instruction_id),
                   true_reward=tf.where(negative, negative_reward, element["true_reward"]))
    return element

  dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
  dataset = dataset.map(rlds.plain_graph(load), num_parallel_calls=num_parallel_calls,
                        deterministic=True)
  dataset = dataset.batch(rows.local_batch, drop_remainder=True).prefetch(prefetch)
  return dataset.with_options(_options())


def episode_steps_dataset(loader, episode_ids, *, batch_size, num_parallel_calls=tf.data.AUTOTUNE,
                          instruction_ids=None):
  """Every step of the given episodes, in order, as flat batches [batch_size, ...].

  Each element carries `episode_pos` (position in `episode_ids`), `step` and `valid` (False on the
  padding that fills the last batch). instruction_ids: [len(episode_ids)] instructions to condition
  on instead of each episode's own.
  """
  index = loader.index
  episode_ids = np.asarray(episode_ids, np.int64)
  if instruction_ids is None:
    instruction_ids = loader.instruction_ids[episode_ids]
  instruction_ids = np.asarray(instruction_ids, np.int32)

  def generate():
    for pos, episode_id in enumerate(episode_ids):
      yield pos, episode_id, index.lengths[episode_id], instruction_ids[pos]

  signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64),
               tf.TensorSpec([], tf.int32))

  def load(pos, episode_id, length, instruction_id):
    steps = tf.range(length, dtype=tf.int32)
    element = loader.load(episode_id, steps)
    element["instruction_id"] = tf.fill(tf.shape(steps), instruction_id)
    element["episode_pos"] = tf.fill(tf.shape(steps), pos)
    element["valid"] = tf.ones_like(steps, tf.bool)
    return element

  dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
  dataset = dataset.map(rlds.plain_graph(load), num_parallel_calls=num_parallel_calls,
                        deterministic=True)
  dataset = dataset.unbatch().batch(batch_size).prefetch(2)
  return dataset.with_options(_options())


def episode_step_batches(loader, episode_ids, *, batch_size, num_parallel_calls=tf.data.AUTOTUNE,
                         instruction_ids=None):
  """episode_steps_dataset's batches as a numpy stream (numpy_batches: bad episodes named)."""
  dataset = episode_steps_dataset(loader, episode_ids, batch_size=batch_size,
                                  num_parallel_calls=num_parallel_calls,
                                  instruction_ids=instruction_ids)
  episode_ids = np.asarray(episode_ids, np.int64)
  ends = np.cumsum(loader.index.lengths[episode_ids])

  def suspects(position):  # the episodes batch `position` covers, and the next one
    first, last = np.searchsorted(ends, [position * batch_size, (position + 1) * batch_size - 1],
                                  side="right")
    return [(e, np.arange(loader.index.lengths[e])) for e in episode_ids[first:last + 2]]

  return numpy_batches(dataset, loader, suspects)


def pad_batch(batch, batch_size):
  """Pads a flat numpy batch to `batch_size` rows (padding rows have valid=False)."""
  n = len(batch["valid"])
  if n == batch_size:
    return batch
  return {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}
