"""Faithful IRCR (docs/ALGORITHM.md, "IRCR baseline"), checked against a NumPy model of the
original's replay buffer, written from its code (Stilwell-Git/Randomized-Return-Decomposition,
algorithm/replay_buffer/mujoco_buffer/ircr_buffer.py, ReplayBuffer_IRCR; learner/mujoco.py):
the top-episode heap's replacement rule (a tie replaces), the FIFO that evicts whole episodes
(a half-overwritten oldest episode is neither sampled nor in the return range), the batch
composition (half from the FIFO, half from the heap, each uniform over its transitions) and the
normalisation by the min / max return over the FIFO's episodes plus the heap's."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from scipy import stats

from rrd_jax.cli import train
from rrd_jax.rl import learner, replay, rewards
from tests.rl_helpers import filled_buffer, make_episode, online_config


class OriginalIRCR:
  """ReplayBuffer_IRCR's bookkeeping, episodes as (id, length, return):
  - store_transition: a transition joins the newest episode of the FIFO `ep`; when the FIFO's
    length then exceeds buffer_size, the oldest WHOLE episode is dropped (ep.pop(0)). The learner
    stores a finished episode's transitions one after the other (learner/mujoco.py).
  - update_heap(new), at each episode's end: once the heap holds `heap_size` (10 there) episodes,
    min_id is the first of lowest return (a strict `<` scan); `if heap[min_id] > new: return`,
    else heap.pop(min_id) and heap.append(new): an equal return replaces.
  - update_val_interval, after it: min / max of the returns over ep + heap_ep.
  - sample_batch: rows [0, B/2) uniform over the FIFO's transitions, the rest over the heap's;
    rews = (R - min) / (max - min)."""

  def __init__(self, buffer_size, heap_size):
    self.buffer_size, self.heap_size = buffer_size, heap_size
    self.ep, self.length, self.heap_ep = [], 0, []
    self.admitted = False  # whether the last finished episode entered the heap

  def store_episode(self, ident, length, value):
    for t in range(length):
      if t == 0:
        self.ep.append([ident, 0, value])
      self.ep[-1][1] += 1
      self.length += 1
      if self.length > self.buffer_size:
        self.length -= self.ep[0][1]
        self.ep.pop(0)
    self.update_heap((ident, length, value))
    values = [e[2] for e in self.ep + self.heap_ep]
    self.min_val, self.max_val = min(values), max(values)

  def update_heap(self, new):
    self.admitted = False
    if len(self.heap_ep) >= self.heap_size:
      min_id = 0
      for i, e in enumerate(self.heap_ep):
        if e[2] < self.heap_ep[min_id][2]:
          min_id = i
      if self.heap_ep[min_id][2] > new[2]:
        return
      self.heap_ep.pop(min_id)
    self.heap_ep.append(new)
    self.admitted = True

  def fifo_ids(self):
    return [e[0] for e in self.ep]

  def heap_ids(self):
    return [e[0] for e in self.heap_ep]


def _episode(ident, length, value):
  """An episode of return exactly `value` (float32: all of it on the first step) whose
  observations identify it (make_episode's seed)."""
  dense = np.zeros(length, np.float32)
  dense[0] = value
  return make_episode(length, dense=dense, seed=ident)


_insert = jax.jit(replay.insert)
_put = jax.jit(lambda b, slot, rows: jax.tree.map(lambda x: x[0], replay.heap_put(
    jax.tree.map(lambda x: x[None], b), 0, slot, rows)))


class ProjectIRCR:
  """The host backend's path (host_agent: insert each finished episode into the ring, then
  heap_slot + heap_put), with the heap's returns and lengths kept on the host as there."""

  def __init__(self, capacity, limit, heap_slots, heap_episode_steps):
    self.buffer = replay.create(capacity, 3, 2, limit=limit, heap_slots=heap_slots,
                                heap_episode_steps=heap_episode_steps)
    self.steps = heap_episode_steps
    self.heap_returns = np.zeros(heap_slots, np.float32)
    self.heap_lengths = np.zeros(heap_slots, np.int32)

  def store_episode(self, ident, episode):
    for block in replay.episodes_to_rows([episode]):
      self.buffer = _insert(self.buffer, block)
    slot = replay.heap_slot(self.heap_returns, self.heap_lengths, episode.episode_return)
    if slot is not None:
      self.buffer = _put(self.buffer, slot, replay.heap_rows(episode, self.steps))
      self.heap_returns[slot], self.heap_lengths[slot] = episode.episode_return, len(episode)
    return slot is not None


def _run_both(specs, capacity, limit, heap_slots, heap_episode_steps):
  """specs: (length, return) per episode, fed in order to the original's model and the project's
  path; returns (original, project, episodes)."""
  original = OriginalIRCR(limit, heap_slots)
  project = ProjectIRCR(capacity, limit, heap_slots, heap_episode_steps)
  episodes = []
  for ident, (length, value) in enumerate(specs):
    episodes.append(_episode(ident, length, value))
    original.store_episode(ident, length, value)
    project.store_episode(ident, episodes[-1])
  return original, project, episodes


def _heap_stream(count, seed):
  """Integer returns (exact in float32) from a narrow range: ties with the heap's lowest return
  happen often."""
  return np.random.default_rng(seed).integers(-20, 21, count).astype(np.float64)


def test_heap_slot_and_heap_offer_follow_the_originals_update_heap():
  """300 episodes into a heap of 10 (the original's size): after each, the kept returns are the
  original's, and the new episode is kept exactly when the original keeps it (ties included:
  sorted returns alone cannot tell a tie that replaces from one that does not). Which of several
  lowest-return episodes a tie evicts is left open (replay.heap_slot's docstring)."""
  values = _heap_stream(300, seed=0)
  original = OriginalIRCR(buffer_size=10**9, heap_size=10)
  heap_returns, heap_lengths = np.zeros(10, np.float32), np.zeros(10, np.int32)
  device = replay.create(8, 3, 2, heap_slots=10, heap_episode_steps=2)
  offer = jax.jit(replay.heap_offer)
  ties = 0
  for ident, value in enumerate(values):
    full = len(original.heap_ep) == 10
    lowest = min(e[2] for e in original.heap_ep) if full else None
    original.store_episode(ident, 1, value)
    ties += bool(full and value == lowest)
    slot = replay.heap_slot(heap_returns, heap_lengths, np.float32(value))
    assert (slot is not None) == original.admitted, (ident, value)
    if slot is not None:
      heap_returns[slot], heap_lengths[slot] = value, 1
    assert sorted(heap_returns[heap_lengths > 0].tolist()) == sorted(
        e[2] for e in original.heap_ep)
    rows = {"observation": np.full((2, 3), ident, np.float32), "action": np.zeros((2, 2)),
            "next_observation": np.zeros((2, 3)), "terminal": np.zeros(2),
            "episode_return": np.float32(value), "episode_length": np.int32(1)}
    device = offer(device, rows, True)
    np.testing.assert_array_equal(np.asarray(device.heap_return), heap_returns)
    kept = np.asarray(device.heap_observation)[::2, 0][np.asarray(device.heap_length) > 0]
    assert (ident in kept) == original.admitted, (ident, value)
  assert ties >= 10  # the stream does exercise the tie rule


# The fixture: ring limit 30, heap of 3. Lengths 8, 6, 7, 9, 5, 8 (43 steps): the ring's rows
# hold steps 13..42, so episode 0 is gone and episode 1 (steps 8..13, return -60, the lowest of
# all) keeps one row; the original's FIFO holds episodes 2..5 (29 steps). Episode 5's return
# ties the heap's lowest (episode 4's 7) and replaces it. Episode 0 (50) stays in the heap.
FIXTURE = [(8, 50.0), (6, -60.0), (7, -3.0), (9, 12.0), (5, 7.0), (8, 7.0)]


def _ircr_buffer():
  original, project, episodes = _run_both(FIXTURE, capacity=48, limit=30, heap_slots=3,
                                          heap_episode_steps=10)
  assert original.fifo_ids() == [2, 3, 4, 5] and sorted(original.heap_ids()) == [0, 3, 5]
  return project.buffer, original, episodes


def test_ring_and_heap_bookkeeping_against_the_original():
  buffer, original, _ = _ircr_buffer()
  fifo = [e[2] for e in original.ep]
  assert float(buffer.return_min) == min(fifo) == -3.0  # not -60: half overwritten
  assert float(buffer.return_max) == max(fifo) == 12.0  # not 50: evicted
  low, high = replay.heap_return_range(buffer)
  assert (float(low), float(high)) == (original.min_val, original.max_val) == (-3.0, 50.0)
  filled = np.asarray(buffer.heap_length) > 0
  assert sorted(np.asarray(buffer.heap_return)[filled].tolist()) == sorted(
      e[2] for e in original.heap_ep)
  assert int(replay.heap_stored(buffer)) == sum(e[1] for e in original.heap_ep) == 25


def test_batch_is_half_fifo_half_heap_with_the_originals_normalisation(repo_root):
  """512-row batches: rows [0, 256) uniform over the original FIFO's 29 transitions (never the
  half-overwritten episode's remaining row), rows [256, 512) uniform over the heap's 25 (of the
  episode that replaced its tie, not of the one it replaced) (chi-square, 99.9%), and every
  reward equals the original's (R - min) / (max - min)."""
  buffer, original, episodes = _ircr_buffer()
  config = online_config(repo_root)
  settings = [learner.kind_settings(config, "ircr")]
  assert settings[0].batch_size == 512 and settings[0].heap

  @jax.jit
  def draw(key):
    batch, (low, high) = learner._sac_batch(buffer, key, 0, settings)  # pylint: disable=protected-access
    return batch, rewards.transition_rewards("ircr", batch, low, high)

  fifo_obs = np.concatenate([episodes[i].observation for i in original.fifo_ids()])
  heap_obs = np.concatenate([episodes[i].observation for i in original.heap_ids()])
  assert len(fifo_obs) == 29 and len(heap_obs) == 25
  fifo_counts, heap_counts = np.zeros(len(fifo_obs)), np.zeros(len(heap_obs))
  low, high = original.min_val, original.max_val
  for seed in range(20):
    batch, reward = jax.device_get(draw(jax.random.PRNGKey(seed)))
    obs = batch["observation"]
    first = (obs[:256, None] == fifo_obs[None]).all(-1)
    second = (obs[256:, None] == heap_obs[None]).all(-1)
    assert first.any(1).all() and second.any(1).all()
    fifo_counts += first.sum(0)
    heap_counts += second.sum(0)
    np.testing.assert_allclose(reward, (batch["episode_return"] - low) / (high - low), rtol=1e-6)
  for counts in (fifo_counts, heap_counts):
    expected = counts.sum() / len(counts)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < stats.chi2.ppf(0.999, len(counts) - 1), counts


def test_a_long_stream_keeps_the_originals_fifo_heap_and_range_after_every_episode():
  """60 episodes of 1..8 steps, integer returns in [-5, 5] (ties), into a ring of limit 24 (of 32
  rows) and a heap of 4: after each episode the set of episodes SAC samples (2048 draws over
  at most 24 rows) is the original FIFO's, the ring's return range is the FIFO's, the heap's
  returns and the combined range are the original's."""
  rng = np.random.default_rng(3)
  specs = [(int(rng.integers(1, 9)), float(rng.integers(-5, 6))) for _ in range(60)]
  original = OriginalIRCR(24, 4)
  project = ProjectIRCR(32, 24, 4, 8)
  sample = jax.jit(replay.sample_transitions, static_argnums=2)
  owner = {}
  partial = 0
  for ident, (length, value) in enumerate(specs):
    episode = _episode(ident, length, value)
    owner.update({o.tobytes(): ident for o in episode.observation})
    original.store_episode(ident, length, value)
    assert project.store_episode(ident, episode) == original.admitted
    buffer = project.buffer
    drawn = np.asarray(sample(buffer, jax.random.PRNGKey(ident), 2048)["observation"])
    assert {owner[o.tobytes()] for o in drawn} == set(original.fifo_ids()), ident
    fifo = [e[2] for e in original.ep]
    assert (float(buffer.return_min), float(buffer.return_max)) == (min(fifo), max(fifo))
    low, high = replay.heap_return_range(buffer)
    assert (float(low), float(high)) == (original.min_val, original.max_val), ident
    assert sorted(project.heap_returns[project.heap_lengths > 0].tolist()) == sorted(
        e[2] for e in original.heap_ep)
    partial += min(int(buffer.count), 24) > original.length  # rows of a partial episode
  assert partial >= 10  # the ring often holds a half-overwritten episode


def test_empty_heap_falls_back_to_the_ring(repo_root):
  buffer = filled_buffer([make_episode(6, seed=1)], capacity=16, heap_slots=2,
                         heap_episode_steps=8)
  settings = [learner.kind_settings(online_config(repo_root), "ircr")]
  batch, _ = learner._sac_batch(buffer, jax.random.PRNGKey(0), 0, settings)  # pylint: disable=protected-access
  ring_obs = make_episode(6, seed=1).observation
  assert (np.asarray(batch["observation"])[:, None] == ring_obs[None]).all(-1).any(1).all()


@pytest.mark.slow
def test_an_ircr_run_fills_its_heap_and_keeps_its_own_settings(repo_root, tmp_path):
  """Pendulum with reward.kind=ircr: the heap holds the top finished episodes of the run, the
  ring is ircr.replay_capacity long, and the run evaluates."""
  config = online_config(repo_root, **{
      "reward.kind": "ircr", "train.total_env_steps": 1000, "train.warmup_steps": 400,
      "eval.every_steps": 1000, "eval.episodes": 1, "ircr.heap_size": 3,
      "ircr.replay_capacity": 600, "ircr.batch_size": 64, "sac.hidden_sizes": (16, 16),
      "checkpoint.every_steps": 0})
  workdir = str(tmp_path / "ircr")
  final = train.train_and_evaluate(config, workdir, log=lambda *_: None)
  assert np.isfinite(final["eval/return"])
  saved = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", "steps", "1000", "buffer"))
  assert int(saved["limit"][0]) == 600 and int(saved["count"][0]) == 1000
  # Five 200-step episodes ended; the heap kept the three with the highest returns.
  heap_length, heap_return = np.asarray(saved["heap_length"][0]), np.asarray(saved["heap_return"][0])
  np.testing.assert_array_equal(heap_length, [200, 200, 200])
  # The ring holds the last three episodes (600 rows); each of them is in the heap exactly when
  # its return reaches the heap's lowest (the two evicted ones are not visible here).
  ring_returns = set(np.round(np.asarray(saved["episode_return"][0][:600]), 3).tolist())
  assert len(ring_returns) == 3
  kept = set(np.round(heap_return, 3).tolist())
  for value in ring_returns:
    assert (value in kept) == (value >= min(kept)), (value, kept)
