"""tf.data pipelines over an indexed RLDS dataset.

Training: a Python generator walks the sampler's batch plans (a pure function of (seed, step)) and
emits one element per sampled episode; a parallel, order-preserving map reads that episode's record,
parses it with the images left as JPEG bytes, gathers the K sampled steps and decodes only those
frames; elements are batched to [episodes, K, ...]. Full-episode streams (evaluation, prediction)
use the same loader with every step of each episode selected.
"""

import numpy as np
import tensorflow as tf

from rrd_jax.data import returns, rlds
from rrd_jax.data.sampling import RRDSampler
from rrd_jax.inputs import ModelInputs

# Keep TensorFlow off accelerators: JAX owns them.
tf.config.set_visible_devices([], "GPU")


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
      key = keys.image if frame == "image" else keys.wrist_image
      rlds.image_shape(builder, key)
      step_keys.append(key)
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
      image = tf.io.decode_image(data, channels=3, expand_animations=False)
      image = tf.image.resize(image, (size, size), antialias=True)
      return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

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


def _options(deterministic=True):
  options = tf.data.Options()
  options.deterministic = deterministic
  options.experimental_optimization.map_parallelization = True
  return options


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
  index = loader.index
  episode_ids = np.asarray(episode_ids, np.int64)
  negative_return = options.negative_return
  sampler = RRDSampler(index.lengths[episode_ids], options,
                       component_ids=loader.component_ids[episode_ids],
                       instruction_ids=loader.instruction_ids[episode_ids])
  global_batch = sampler.episodes_per_batch
  if global_batch % process_count or not 0 <= process_index < process_count:
    raise ValueError(f"episodes_per_batch {global_batch} must split evenly over {process_count} "
                     f"processes (process_index {process_index})")
  local_batch = global_batch // process_count
  lo, hi = process_index * local_batch, (process_index + 1) * local_batch
  end_step = None if num_steps is None else start_step + num_steps
  num_samples = sampler.sample_size

  def generate():
    step = start_step
    while end_step is None or step < end_step:
      plan = sampler.plan(step)
      for row in range(lo, hi):
        episode_id = episode_ids[plan.episode_ids[row]]
        negative = plan.negative is not None and plan.negative[row]
        instruction = (plan.instruction_ids[row] if plan.instruction_ids is not None
                       else loader.instruction_ids[episode_id])
        episode_return = negative_return if negative else targets.returns[episode_id]
        yield (episode_id, plan.sample_indices[row], index.lengths[episode_id],
               np.float32(episode_return), np.int32(instruction), np.bool_(negative))
      step += 1

  targets = loader.targets
  signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([num_samples], tf.int32),
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
  dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
  dataset = dataset.batch(local_batch, drop_remainder=True).prefetch(prefetch)
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
  dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
  dataset = dataset.unbatch().batch(batch_size).prefetch(2)
  return dataset.with_options(_options())


def pad_batch(batch, batch_size):
  """Pads a flat numpy batch to `batch_size` rows (padding rows have valid=False)."""
  n = len(batch["valid"])
  if n == batch_size:
    return batch
  return {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}
