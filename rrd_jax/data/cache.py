"""Frame caches: decode a dataset's frames once, then sample RRD batches without tf.data.

config.data.cache:
  "none"   stream episodes with tf.data (rrd_jax/data/pipeline.py), decoding only sampled frames;
  "host"   a uint8 frame table in host RAM; batches follow the streaming sampler's plans exactly
           (the same (seed, step) -> plan), gathered with numpy;
  "device" the frame table in accelerator memory, split over the devices of the data mesh (each
           device holds a disjoint, frame-balanced set of episodes: rrd_jax/data/shards.py, which
           also states the sampling law); episode sampling, step-index sampling and frame
           gathering run inside the jitted step, per device on its own shard (shard_map), and many
           steps run per call with lax.scan: no host work per step. Each process decodes only
           the episodes its own devices hold.
Both caches hold every step of the cached episodes: frames [F, S, S, 3] uint8 (and wrist frames),
state/action/true_reward per frame, and per-episode start, length, return, instruction and
mixture component.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from rrd_jax.data import returns, shards
from rrd_jax.data.sampling import episode_probabilities, RRDSampler, sample_step_indices_in_jit
from rrd_jax.util.progress import progress_bar


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


def frame_bytes(inputs):
  """Bytes one cached step takes: its frames (uint8) and a bound on its low-dimensional values."""
  return 3 * inputs.image_size * inputs.image_size * len(inputs.frames) + 4 * 32


def table_bytes(loader, episode_ids):
  """Bytes a table of these episodes will take (to decide whether it fits)."""
  return int(loader.index.lengths[np.asarray(episode_ids)].sum()) * frame_bytes(loader.inputs)


def _decode(loader, episode_ids, bar):
  """Decodes (and resizes) every frame of `episode_ids` once into a host FrameTable. `loader`:
  a pipeline.EpisodeLoader, or anything with its index, inputs, targets, instruction_ids and
  step_batches (this module itself needs no TensorFlow)."""
  episode_ids = np.asarray(episode_ids, np.int64)
  lengths = loader.index.lengths[episode_ids].astype(np.int32)
  batches = loader.step_batches(episode_ids, batch_size=1024)
  keep = ["state", "action", "true_reward", *loader.inputs.frames]
  chunks = {k: [] for k in keep}
  for batch in batches:
    for k in keep:
      chunks[k].append(batch[k])
    bar.update(len(batch["state"]))
  start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
  return FrameTable(frames={k: np.concatenate(v) for k, v in chunks.items()}, start=start,
                    length=lengths,
                    episode_return=loader.targets.returns[episode_ids].astype(np.float32),
                    instruction_id=loader.instruction_ids[episode_ids].astype(np.int32),
                    episode_id=episode_ids)


def build_table(loader, episode_ids, progress=True):
  """Decodes (and resizes) every frame of `episode_ids` once into a host FrameTable."""
  bar = progress_bar(int(loader.index.lengths[np.asarray(episode_ids)].sum()), "cache",
                     enabled=progress, unit="frame")
  table = _decode(loader, episode_ids, bar)
  bar.close()
  return table


def pad_table(table, num_frames, num_episodes):
  """The table with zero frames and dummy episodes (start 0, length 1, id -1) appended, so every
  device's shard has the same shape; the sampler gives the dummies probability 0."""
  def pad(x, n, value=0):
    return np.concatenate([x, np.full((n - len(x),) + x.shape[1:], value, x.dtype)])
  return FrameTable(frames={k: pad(v, num_frames) for k, v in table.frames.items()},
                    start=pad(table.start, num_episodes), length=pad(table.length, num_episodes, 1),
                    episode_return=pad(table.episode_return, num_episodes),
                    instruction_id=pad(table.instruction_id, num_episodes),
                    episode_id=pad(table.episode_id, num_episodes, -1))


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


def shard_plan(loader, episode_ids, options, component_ids, num_shards):
  """How `episode_ids` split over `num_shards` devices (rrd_jax/data/shards.py)."""
  lengths = loader.index.lengths[np.asarray(episode_ids, np.int64)]
  probabilities = episode_probabilities(lengths, options.weighting, component_ids,
                                        options.component_weights)
  return shards.ShardPlan.build(lengths, probabilities, num_shards)


def shard_bytes(loader, plan):
  """Device bytes of one (padded) shard."""
  return plan.max_frames * frame_bytes(loader.inputs) + plan.max_episodes * 4 * 8


def _global_array(mesh, local_leaves):
  """{mesh position: numpy leaf of this process's devices} -> one array split over the mesh."""
  devices = mesh.devices.ravel()
  first = next(iter(local_leaves.values()))
  shape = (len(devices) * first.shape[0],) + first.shape[1:]
  return jax.make_array_from_single_device_arrays(
      shape, NamedSharding(mesh, P(mesh.axis_names[0])),
      [jax.device_put(leaf, devices[d]) for d, leaf in local_leaves.items()])


class DeviceCache:
  """The training episodes' frames in device memory, one shard per device of a 1-D mesh (`plan`,
  rrd_jax/data/shards.py), and the in-jit sampler's fixed arguments. This process decodes only
  the shards of its own devices."""

  def __init__(self, loader, episode_ids, plan, options, mesh, progress=True):
    episode_ids = np.asarray(episode_ids, np.int64)
    self.seed = int(options.seed)
    self.mesh, self.plan = mesh, plan
    self.sample_kwargs = dict(
        episodes_per_batch=int(options.episodes_per_batch) // plan.num_shards,
        sample_size=int(options.sample_size), wanted=_wanted(loader.inputs),
        max_length=int(plan.lengths.max()), negatives_ratio=float(options.negatives_ratio),
        candidates=jnp.asarray(np.unique(loader.instruction_ids[episode_ids]), jnp.int32),
        negative_return=float(options.negative_return))
    local = [d for d, device in enumerate(mesh.devices.ravel())
             if device.process_index == jax.process_index()]
    bar = progress_bar(sum(plan.frames[d] for d in local), "cache", enabled=progress, unit="frame")
    tables = [pad_table(_decode(loader, episode_ids[plan.members[d]], bar), plan.max_frames,
                        plan.max_episodes) for d in local]
    bar.close()
    self.table = jax.tree.map(lambda *leaves: _global_array(mesh, dict(zip(local, leaves))),
                              *tables)
    self.probabilities = _global_array(mesh, {d: plan.shard_probabilities(d) for d in local})

  def sample(self, table, probabilities, step):
    """The global batch of `step` (traceable): a pure function of (seed, step). Each device
    draws its B/D episodes from its own shard, with the step's key folded with its position on
    the mesh (with one device: the step's key itself). The table and probabilities are passed in
    (jit arguments, not baked-in constants)."""
    key = jax.random.fold_in(jax.random.PRNGKey(self.seed), step)
    axis = self.mesh.axis_names[0]
    sharded = self.plan.num_shards > 1

    def local(table, probabilities, key):
      if sharded:
        key = jax.random.fold_in(key, jax.lax.axis_index(axis))
      return sample_batch(key, table, probabilities, **self.sample_kwargs)

    return jax.shard_map(local, mesh=self.mesh, in_specs=(P(axis), P(axis), P()),
                         out_specs=P(axis))(table, probabilities, key)
