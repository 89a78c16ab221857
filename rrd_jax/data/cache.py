"""Frame caches: decode a dataset's frames once, then sample RRD batches without tf.data.

config.data.cache:
  "none"   stream episodes with tf.data (rrd_jax/data/pipeline.py), decoding only sampled frames;
  "host"   a uint8 frame table in host RAM; batches follow the streaming sampler's plans exactly
           (the same (seed, step) -> plan), gathered with numpy;
  "device" the frame table in accelerator memory; episode sampling, step-index sampling and frame
           gathering run inside the jitted step (same sampling law, jax.random draws), and many
           steps run per call with lax.scan: no host work per step.
Both caches hold every step of the cached episodes: frames [F, S, S, 3] uint8 (and wrist frames),
state/action/true_reward per frame, and per-episode start, length, return, instruction and
mixture component.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rrd_jax.progress import progress_bar
from rrd_jax.data import pipeline, returns
from rrd_jax.data.sampling import RRDSampler, episode_probabilities, sample_step_indices_in_jit


@dataclasses.dataclass
class FrameTable:
  """Every step of some episodes, flattened; a pytree of arrays (numpy or jax)."""
  frames: dict  # per-frame arrays [F, ...]: state, action, true_reward (+ image, wrist_image)
  start: np.ndarray  # [E] int32: first frame of each episode
  length: np.ndarray  # [E] int32
  episode_return: np.ndarray  # [E] float32 (the return definition's targets)
  instruction_id: np.ndarray  # [E] int32
  episode_id: np.ndarray  # [E] int64: the episode's id in the dataset index


jax.tree_util.register_dataclass(
    FrameTable, data_fields=["frames", "start", "length", "episode_return", "instruction_id",
                             "episode_id"], meta_fields=[])


def table_bytes(loader, episode_ids):
  """Bytes a table of these episodes will take (to decide whether it fits)."""
  frames = int(loader.index.lengths[np.asarray(episode_ids)].sum())
  size = loader.inputs.image_size
  per_frame = 3 * size * size * len(loader.inputs.frames) + 4 * 32
  return frames * per_frame


def build_table(loader, episode_ids, progress=True):
  """Decodes (and resizes) every frame of `episode_ids` once into a host FrameTable."""
  episode_ids = np.asarray(episode_ids, np.int64)
  lengths = loader.index.lengths[episode_ids].astype(np.int32)
  batches = pipeline.episode_step_batches(loader, episode_ids, batch_size=1024)
  keep = ["state", "action", "true_reward", *loader.inputs.frames]
  chunks = {k: [] for k in keep}
  bar = progress_bar(int(lengths.sum()), "cache", enabled=progress, unit="frame")
  for batch in batches:
    for k in keep:
      chunks[k].append(batch[k])
    bar.update(len(batch["state"]))
  bar.close()
  start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
  return FrameTable(frames={k: np.concatenate(v) for k, v in chunks.items()}, start=start,
                    length=lengths,
                    episode_return=loader.targets.returns[episode_ids].astype(np.float32),
                    instruction_id=loader.instruction_ids[episode_ids].astype(np.int32),
                    episode_id=episode_ids)


def _gather(frames, start, length, indices, wanted, xp):
  """Model inputs for episodes (start/length [B]) at step indices [B, K] from a frame table."""
  rows = start[:, None] + indices
  next_rows = start[:, None] + xp.minimum(indices + 1, length[:, None] - 1)
  out = {"state": frames["state"][rows], "next_state": frames["state"][next_rows],
         "action": frames["action"][rows], "true_reward": frames["true_reward"][rows]}
  if "image" in wanted:
    out["image"] = frames["image"][rows]
  if "next_image" in wanted:
    out["next_image"] = frames["image"][next_rows]
  if "wrist_image" in wanted:
    out["wrist_image"] = frames["wrist_image"][rows]
  return out


def _wanted(inputs):
  return set(inputs.keys)


def _finish_batch(batch, table, e, indices, negative, instruction, negative_return, xp):
  """Adds the per-episode fields to gathered frames; negatives get the negative return (and
  negative_return / T on every step) and their other instruction, as the stream does."""
  length = table.length[e]
  per_step = (negative_return / length.astype(xp.float32))[:, None].astype(xp.float32)
  batch["true_reward"] = xp.where(negative[:, None], per_step, batch["true_reward"])
  batch.update(episode_id=table.episode_id[e], episode_length=length,
               episode_return=xp.where(negative, negative_return,
                                       table.episode_return[e]).astype(xp.float32),
               negative=negative, step=indices,
               instruction_id=xp.broadcast_to(instruction[:, None], indices.shape))
  return batch


class HostCache:
  """Batches from a host FrameTable along the streaming sampler's plans (identical batches)."""

  def __init__(self, table, inputs, options, *, component_ids):
    self.table = table
    self.wanted = _wanted(inputs)
    self.sampler = RRDSampler(table.length, options, component_ids=component_ids,
                              instruction_ids=table.instruction_id)
    self.negative_return = float(options.negative_return)

  def batch(self, step):
    t = self.table
    plan = self.sampler.plan(step)
    e = plan.episode_ids
    batch = _gather(t.frames, t.start[e], t.length[e], plan.sample_indices, self.wanted, np)
    negative = (plan.negative if plan.negative is not None else np.zeros(len(e), bool))
    instruction = plan.instruction_ids if plan.instruction_ids is not None else t.instruction_id[e]
    return _finish_batch(batch, t, e, plan.sample_indices, negative, instruction,
                         self.negative_return, np)

  def batches(self, start_step, num_steps):
    for step in range(start_step, start_step + num_steps):
      yield self.batch(step)


def sample_batch(key, table, probabilities, *, episodes_per_batch, sample_size, wanted, max_length,
                 negatives_ratio=0.0, candidates=None, negative_return=0.0):
  """One RRD batch drawn inside jit from a device FrameTable (the streaming sampler's law:
  episodes i.i.d. by `probabilities`; K distinct indices uniformly when K <= T, else K i.i.d.)."""
  k_episode, k_steps, k_negative, k_other = jax.random.split(key, 4)
  e = jax.random.choice(k_episode, probabilities.shape[0], (episodes_per_batch,), p=probabilities)
  length = table.length[e]
  indices = sample_step_indices_in_jit(k_steps, length, sample_size, max_length)
  batch = _gather(table.frames, table.start[e], length, indices, wanted, jnp)
  instruction = table.instruction_id[e]
  negative = jnp.zeros(episodes_per_batch, bool)
  if negatives_ratio > 0:
    negative = jax.random.uniform(k_negative, (episodes_per_batch,)) < negatives_ratio
    other = returns.mismatched_from_uniform(jax.random.uniform(k_other, (episodes_per_batch,)),
                                            instruction, candidates, jnp)
    instruction = jnp.where(negative, other, instruction)
  return _finish_batch(batch, table, e, indices, negative, instruction, negative_return, jnp)


class DeviceCache:
  """A FrameTable in device memory and the in-jit sampler's fixed arguments."""

  def __init__(self, table, inputs, options, *, component_ids, sharding=None):
    self.seed = int(options.seed)
    probabilities = episode_probabilities(table.length, options.weighting, component_ids,
                                          options.component_weights)
    self.sample_kwargs = dict(episodes_per_batch=int(options.episodes_per_batch),
                              sample_size=int(options.sample_size), wanted=_wanted(inputs),
                              max_length=int(table.length.max()),
                              negatives_ratio=float(options.negatives_ratio),
                              candidates=jnp.asarray(np.unique(table.instruction_id), jnp.int32),
                              negative_return=float(options.negative_return))
    self.table = jax.device_put(table, sharding)
    self.probabilities = jax.device_put(jnp.asarray(probabilities, jnp.float32), sharding)

  def sample(self, table, probabilities, step):
    """The batch of `step` (traceable): a pure function of (seed, step). The table and episode
    probabilities are passed in (jit arguments, not baked-in constants)."""
    key = jax.random.fold_in(jax.random.PRNGKey(self.seed), step)
    return sample_batch(key, table, probabilities, **self.sample_kwargs)
