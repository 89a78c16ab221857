"""The replay buffer: a fixed-size pytree of device arrays holding whole finished episodes.

Design (what the reward kinds and RRD need):
- Episodes enter only when finished (envs.EnvBatch keeps running ones on the host), as in the
  reference, so every stored transition knows its episode's return R and length T. Each transition
  row carries `episode_start` (the global index of its episode's first step), `episode_length` and
  `episode_return`: these are the per-transition episode tables RRD, IRCR and uniform read.
- A ring over transitions: global index g lives at row g % capacity; `count` transitions were ever
  inserted, so rows hold g in [max(0, count - capacity), count). When the ring wraps, the oldest
  episode may be partially overwritten: from then on it no longer counts as stored. Sampling (SAC's
  transitions and RRD's episodes) and the return range see only the episodes
  whose every step is still stored, as in the reference's RRD and IRCR buffers, whose FIFO
  evicts the oldest WHOLE episode as soon as the next transition would overflow it. The whole
  episodes of a ring of `limit` rows are exactly the reference FIFO's of buffer_size = `limit`
  (the longest run of the newest episodes that fits).
- `limit` (<= the arrays' rows) is the ring's size: a member of a population can keep fewer
  transitions than the others (IRCR's own replay capacity) with the same array shapes.
- `return_min` / `return_max` are over the whole episodes stored in the ring, recomputed on every
  insert (the reference IRCR recomputes them whenever an episode ends; episodes enter only here).
- IRCR's heap (docs/ALGORITHM.md, "IRCR baseline"): copies of the `heap_slots` highest-return
  finished episodes, each in a slot of `heap_episode_steps` rows. The host decides which slot a
  finished episode takes (`heap_slot`: an empty one, else the lowest unless its return is higher
  than the new one: the reference keeps its heap only when the lowest return is strictly higher,
  so a tie replaces) and writes it with `heap_put`; the device applies the same rule in jit
  (`heap_offer`). Without an IRCR member the heap is one unused slot of one row (orbax cannot
  save zero-size arrays).
Sampling happens inside jit: SAC transitions uniformly over the whole episodes' rows (IRCR: half
of them from the heap's transitions, `sample_heap`); RRD episodes with probability proportional
to their length (a uniformly drawn step's episode, the reference's weighting), K steps each
without replacement (with replacement when K > T).
"""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np

from rrd_jax.data import sampling

INSERT_BLOCK = 1024  # rows per insert call (padded): one compiled shape


@flax.struct.dataclass
class ReplayBuffer:
  observation: jax.Array  # [N, O]
  action: jax.Array  # [N, A]
  next_observation: jax.Array  # [N, O]
  reward: jax.Array  # [N] the environment's delayed reward
  dense_reward: jax.Array  # [N] the true per-step reward (the `dense` oracle only)
  terminal: jax.Array  # [N] 1.0 on a true terminal
  episode_start: jax.Array  # [N] int32 global index of the episode's first step
  episode_length: jax.Array  # [N] int32 T
  episode_return: jax.Array  # [N] R
  count: jax.Array  # [] int32 transitions ever inserted
  num_episodes: jax.Array  # [] int32 episodes ever inserted
  return_min: jax.Array  # [] min R over the episodes stored in the ring
  return_max: jax.Array  # [] max R over the episodes stored in the ring
  limit: jax.Array  # [] int32 the ring's size (<= capacity, the arrays' rows)
  heap_observation: jax.Array  # [H * L, O] IRCR's top episodes, slot h in rows [h L, h L + T_h)
  heap_action: jax.Array  # [H * L, A]
  heap_next_observation: jax.Array  # [H * L, O]
  heap_terminal: jax.Array  # [H * L]
  heap_return: jax.Array  # [H] R of each slot's episode
  heap_length: jax.Array  # [H] int32 T of each slot's episode; 0 = empty slot

  @property
  def capacity(self):
    return self.reward.shape[0]

  @property
  def heap_slots(self):
    return self.heap_return.shape[-1]

  @property
  def heap_episode_steps(self):
    return self.heap_terminal.shape[-1] // max(self.heap_slots, 1)


def create(capacity, observation_size, action_size, limit=None, heap_slots=1,
           heap_episode_steps=1):
  """An empty buffer of `capacity` rows whose ring uses the first `limit` (default all), with an
  IRCR heap of heap_slots x heap_episode_steps rows."""
  f32 = lambda *shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
  i32 = lambda *shape: jnp.zeros(shape, jnp.int32)  # noqa: E731
  heap = heap_slots * heap_episode_steps
  return ReplayBuffer(
      observation=f32(capacity, observation_size), action=f32(capacity, action_size),
      next_observation=f32(capacity, observation_size), reward=f32(capacity),
      dense_reward=f32(capacity), terminal=f32(capacity), episode_start=i32(capacity),
      episode_length=i32(capacity), episode_return=f32(capacity), count=i32(), num_episodes=i32(),
      return_min=jnp.asarray(jnp.inf, jnp.float32), return_max=jnp.asarray(-jnp.inf, jnp.float32),
      limit=jnp.asarray(capacity if limit is None else limit, jnp.int32),
      heap_observation=f32(heap, observation_size), heap_action=f32(heap, action_size),
      heap_next_observation=f32(heap, observation_size), heap_terminal=f32(heap),
      heap_return=f32(heap_slots), heap_length=i32(heap_slots))


def episodes_to_rows(episodes):
  """Host side: finished episodes -> blocks of INSERT_BLOCK padded rows for `insert`."""
  if not episodes:
    return []
  columns = {
      "observation": np.concatenate([e.observation for e in episodes]),
      "action": np.concatenate([e.action for e in episodes]),
      "next_observation": np.concatenate([e.next_observation for e in episodes]),
      "reward": np.concatenate([e.reward for e in episodes]),
      "dense_reward": np.concatenate([e.dense_reward for e in episodes]),
      "terminal": np.concatenate([e.terminal for e in episodes]),
      "step_in_episode": np.concatenate([np.arange(len(e), dtype=np.int32) for e in episodes]),
      "episode_length": np.concatenate([np.full(len(e), len(e), np.int32) for e in episodes]),
      "episode_return": np.concatenate([np.full(len(e), e.episode_return, np.float32)
                                        for e in episodes]),
  }
  total = len(columns["reward"])
  blocks = []
  for begin in range(0, total, INSERT_BLOCK):
    size = min(INSERT_BLOCK, total - begin)
    block = {k: np.zeros((INSERT_BLOCK,) + v.shape[1:], v.dtype) for k, v in columns.items()}
    for k, v in columns.items():
      block[k][:size] = v[begin:begin + size]
    block["valid"] = np.arange(INSERT_BLOCK) < size
    blocks.append(block)
  return blocks


def member_blocks(episodes_by_member):
  """Host side: finished episodes per member -> blocks [M, INSERT_BLOCK, ...] for a vmapped
  `insert`; a member with fewer blocks than another gets blocks with no valid rows."""
  per_member = [episodes_to_rows(episodes) for episodes in episodes_by_member]
  count = max(map(len, per_member), default=0)
  if not count:
    return []
  template = next(blocks[0] for blocks in per_member if blocks)
  empty = {k: np.zeros_like(v) for k, v in template.items()}  # valid: all False
  return [{k: np.stack([(blocks[i] if i < len(blocks) else empty)[k] for blocks in per_member])
           for k in template} for i in range(count)]


def insert(buffer, rows):
  """Appends the valid rows of one block (whole episodes, in order) to the ring.

  The valid rows need not be a prefix (the device loop passes every env's pending episode with
  only the finished ones valid): they are packed in block order. When there are more of them
  than the capacity, only the last `capacity` are written (the earlier ones would be overwritten
  within this same insert):
  no ring row is the target of two rows, so the result does not depend on the order in which the
  scatter applies repeated indices, which XLA leaves unspecified (XLA:CPU happens to apply them in
  order; other backends need not). count, num_episodes and the return range count every valid row.
  """
  valid = rows["valid"]
  num_valid = jnp.sum(valid.astype(jnp.int32))
  position = jnp.cumsum(valid.astype(jnp.int32)) - 1  # packed order of the valid rows
  global_index = buffer.count + position
  kept = valid & (position >= num_valid - buffer.limit)
  index = jnp.where(kept, global_index % buffer.limit, buffer.capacity)  # others: dropped
  put = lambda array, values: array.at[index].set(values, mode="drop")  # noqa: E731
  returns = put(buffer.episode_return, rows["episode_return"])
  count = buffer.count + num_valid
  starts = put(buffer.episode_start, global_index - rows["step_in_episode"])
  # The return range is over the whole episodes only: a row counts when its episode's first step
  # is still stored (episodes enter whole and in order, so then all its steps are).
  whole = ((jnp.arange(buffer.capacity) < jnp.minimum(count, buffer.limit))
           & (starts >= jnp.maximum(count - buffer.limit, 0)))
  return buffer.replace(
      observation=put(buffer.observation, rows["observation"]),
      action=put(buffer.action, rows["action"]),
      next_observation=put(buffer.next_observation, rows["next_observation"]),
      reward=put(buffer.reward, rows["reward"]),
      dense_reward=put(buffer.dense_reward, rows["dense_reward"]),
      terminal=put(buffer.terminal, rows["terminal"]),
      episode_start=starts,
      episode_length=put(buffer.episode_length, rows["episode_length"]),
      episode_return=returns,
      count=count,
      num_episodes=buffer.num_episodes + jnp.sum(valid & (rows["step_in_episode"] == 0)),
      return_min=jnp.min(jnp.where(whole, returns, jnp.inf)),
      return_max=jnp.max(jnp.where(whole, returns, -jnp.inf)))


def _oldest(buffer):
  """[] the global index of the oldest stored step."""
  return jnp.maximum(buffer.count - buffer.limit, 0)


def _first_whole(buffer):
  """[] the global index of the first step of the oldest episode whose every step is stored: past
  the oldest stored step's episode when the ring has overwritten that episode's beginning."""
  oldest = _oldest(buffer)
  oldest_row = oldest % buffer.limit
  oldest_start = buffer.episode_start[oldest_row]
  return jnp.where(oldest_start >= oldest, oldest,
                   oldest_start + buffer.episode_length[oldest_row])


def _rows(buffer, index):
  fields = ("observation", "action", "next_observation", "reward", "dense_reward", "terminal",
            "episode_length", "episode_return")
  return {k: getattr(buffer, k)[index] for k in fields}


def sample_transitions(buffer, key, batch_size):
  """A dict of [batch_size, ...] transitions drawn uniformly from the rows of the whole stored
  episodes (the reference RRD / IRCR FIFO's: a partly overwritten oldest episode is not drawn)."""
  global_index = jax.random.randint(key, (batch_size,), _first_whole(buffer), buffer.count)
  return _rows(buffer, global_index % buffer.limit)


def sample_heap(buffer, key, batch_size):
  """[batch_size] transitions drawn uniformly from the heap's stored transitions (an episode with
  probability proportional to its length, then a uniform step), as `sample_transitions`' rows
  (reward / dense_reward 0: IRCR reads only the episode's return); heap_stored() must be > 0."""
  lengths = buffer.heap_length
  ends = jnp.cumsum(lengths)
  draw = jax.random.randint(key, (batch_size,), 0, jnp.maximum(ends[-1], 1))
  slot = jnp.searchsorted(ends, draw, side="right")
  row = slot * buffer.heap_episode_steps + draw - (ends - lengths)[slot]
  zeros = jnp.zeros(batch_size, jnp.float32)
  return {"observation": buffer.heap_observation[row], "action": buffer.heap_action[row],
          "next_observation": buffer.heap_next_observation[row], "reward": zeros,
          "dense_reward": zeros, "terminal": buffer.heap_terminal[row],
          "episode_length": lengths[slot], "episode_return": buffer.heap_return[slot]}


def heap_stored(buffer):
  """[] int32 transitions in the heap."""
  return jnp.sum(buffer.heap_length)


def heap_return_range(buffer):
  """(min, max) of the returns over the ring's episodes and the heap's (IRCR's normalisation)."""
  filled = buffer.heap_length > 0
  low = jnp.min(jnp.where(filled, buffer.heap_return, jnp.inf), initial=jnp.inf)
  high = jnp.max(jnp.where(filled, buffer.heap_return, -jnp.inf), initial=-jnp.inf)
  return jnp.minimum(buffer.return_min, low), jnp.maximum(buffer.return_max, high)


def heap_slot(heap_returns, heap_lengths, episode_return):
  """Host side, the reference's rule: the slot a finished episode takes in the heap (an empty
  slot, else the lowest-return one unless its return is higher than this one: a tie replaces),
  or None. Compared in float32, as the heap stores returns and as `heap_offer` compares them.

  Of several slots sharing the lowest return this takes the first; the reference evicts the
  oldest of those episodes instead (its heap is a list it pops from and appends to). Only which
  of equal-return episodes stays differs: the kept returns, hence min / max, are the same."""
  empty = np.flatnonzero(np.asarray(heap_lengths) == 0)
  if len(empty):
    return int(empty[0])
  returns = np.asarray(heap_returns, np.float32)
  lowest = int(np.argmin(returns))
  return lowest if np.float32(episode_return) >= returns[lowest] else None


def heap_rows(episode, heap_episode_steps):
  """Host side: one finished episode as a heap slot's padded rows."""
  pad = lambda x: np.concatenate([x, np.zeros((heap_episode_steps - len(x),) + x.shape[1:],  # noqa: E731
                                               x.dtype)])
  return {"observation": pad(episode.observation), "action": pad(episode.action),
          "next_observation": pad(episode.next_observation), "terminal": pad(episode.terminal),
          "episode_return": np.float32(episode.episode_return),
          "episode_length": np.int32(len(episode))}


def heap_put(buffers, member, slot, rows):
  """Writes a heap slot's rows (`heap_rows`) into member `member` of member-stacked buffers."""
  start = slot * buffers.heap_episode_steps

  def write(array, values):
    values = jnp.asarray(values, array.dtype)[None]
    return jax.lax.dynamic_update_slice(array, values, (member, start) + (0,) * (values.ndim - 2))

  return buffers.replace(
      heap_observation=write(buffers.heap_observation, rows["observation"]),
      heap_action=write(buffers.heap_action, rows["action"]),
      heap_next_observation=write(buffers.heap_next_observation, rows["next_observation"]),
      heap_terminal=write(buffers.heap_terminal, rows["terminal"]),
      heap_return=buffers.heap_return.at[member, slot].set(rows["episode_return"]),
      heap_length=buffers.heap_length.at[member, slot].set(rows["episode_length"]))


def heap_offer(buffer, rows, offered):
  """In jit, on one member's buffer: `heap_slot`'s rule applied to one finished episode, offered
  when `offered` ([] bool). rows: as `heap_rows` gives (padded to heap_episode_steps rows, plus
  episode_return and episode_length). Writes the episode into its slot if it takes one."""
  empty = buffer.heap_length == 0
  slot = jnp.where(jnp.any(empty), jnp.argmax(empty), jnp.argmin(buffer.heap_return))
  new_return = jnp.asarray(rows["episode_return"], buffer.heap_return.dtype)
  take = offered & (jnp.any(empty) | (new_return >= buffer.heap_return[slot]))
  steps = buffer.heap_episode_steps
  start = slot * steps

  def write(array, values):
    index = (start,) + (0,) * (array.ndim - 1)
    old = jax.lax.dynamic_slice(array, index, (steps,) + array.shape[1:])
    return jax.lax.dynamic_update_slice(array, jnp.where(take, values.astype(array.dtype), old),
                                        index)

  return buffer.replace(
      heap_observation=write(buffer.heap_observation, rows["observation"]),
      heap_action=write(buffer.heap_action, rows["action"]),
      heap_next_observation=write(buffer.heap_next_observation, rows["next_observation"]),
      heap_terminal=write(buffer.heap_terminal, rows["terminal"]),
      heap_return=buffer.heap_return.at[slot].set(
          jnp.where(take, new_return, buffer.heap_return[slot])),
      heap_length=buffer.heap_length.at[slot].set(
          jnp.where(take, rows["episode_length"], buffer.heap_length[slot])))


def sample_episodes(buffer, key, num_episodes, sample_size, max_episode_length):
  """An RRD batch: [B, K, ...] steps of B whole stored episodes (B = num_episodes, K =
  sample_size), episodes drawn with probability proportional to their length, steps without
  replacement when K <= T, with replacement when K > T; plus [B] episode_return, episode_length."""
  key_episode, key_steps = jax.random.split(key)
  step = jax.random.randint(key_episode, (num_episodes,), _first_whole(buffer), buffer.count)
  row = step % buffer.limit
  start, length = buffer.episode_start[row], buffer.episode_length[row]  # [B]
  offsets = sampling.sample_step_indices_in_jit(key_steps, length, sample_size,
                                                max_episode_length)  # [B, K]
  index = (start[:, None] + offsets) % buffer.limit
  batch = {k: getattr(buffer, k)[index] for k in ("observation", "action", "next_observation")}
  batch.update(episode_return=buffer.episode_return[row], episode_length=length)
  chex.assert_shape(batch["observation"], (num_episodes, sample_size, None))
  return batch
