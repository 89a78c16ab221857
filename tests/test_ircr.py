"""Faithful IRCR (RRD_REFERENCE.md, "Baselines"), checked against NumPy references written from the
description of the original: the top-episode heap's replacement rule, the batch composition (half
from the FIFO ring, half from the heap, each uniform over its transitions) and the normalisation
by the min / max return over the ring's episodes plus the heap's."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from scipy import stats

from rrd_jax.cli import train
from rrd_jax.rl import learner, replay, rewards
from tests.rl_helpers import filled_buffer, make_episode, online_config


def reference_heap(returns, size):
  """The original's heap: the first `size` episodes fill it; afterwards a new episode replaces
  the lowest-return one only if its return is higher. Returns the kept returns per step."""
  heap, history = [], []
  for value in returns:
    if len(heap) < size:
      heap.append(value)
    elif value > min(heap):
      heap[heap.index(min(heap))] = value
    history.append(sorted(heap))
  return history


def test_heap_slot_follows_the_originals_replacement_rule():
  rng = np.random.default_rng(0)
  returns = np.round(rng.normal(size=300) * 10, 1)  # rounded: ties happen and must not replace
  heap_returns, heap_lengths = np.zeros(10, np.float32), np.zeros(10, np.int32)
  for value, expected in zip(returns, reference_heap(returns, 10)):
    slot = replay.heap_slot(heap_returns, heap_lengths, np.float32(value))
    if slot is not None:
      heap_returns[slot], heap_lengths[slot] = value, 5
    kept = sorted(heap_returns[heap_lengths > 0].tolist())
    np.testing.assert_allclose(kept, expected, rtol=1e-6)


def _ircr_buffer():
  """A ring of 30 rows that has wrapped: of the 6 episodes inserted, the first (return 50 = the
  largest) and part of the second are overwritten. The heap holds two episodes, one with the
  smallest return of all (-40), no longer in the ring."""
  dense = lambda value, length: np.full(length, value / length, np.float32)  # noqa: E731
  ring = [make_episode(8, dense=dense(50, 8), seed=1), make_episode(6, dense=dense(5, 6), seed=2),
          make_episode(7, dense=dense(-3, 7), seed=3), make_episode(9, dense=dense(12, 9), seed=4),
          make_episode(5, dense=dense(7, 5), seed=5), make_episode(8, dense=dense(1, 8), seed=6)]
  heap = [make_episode(4, dense=dense(-40, 4), seed=7), make_episode(6, dense=dense(30, 6), seed=8)]
  buffer = filled_buffer(ring, capacity=48, limit=30, heap=heap, heap_slots=3,
                         heap_episode_steps=10)
  return buffer, ring, heap


def test_ring_and_heap_bookkeeping_against_numpy():
  buffer, ring, heap = _ircr_buffer()
  steps = np.concatenate([np.full(len(e), e.episode_return) for e in ring])
  stored = steps[-30:]  # the last 30 transitions inserted
  assert float(buffer.return_min) == pytest.approx(stored.min())
  assert float(buffer.return_max) == pytest.approx(stored.max())  # not 50: evicted
  low, high = replay.heap_return_range(buffer)
  all_returns = np.concatenate([stored, [e.episode_return for e in heap]])
  assert float(low) == pytest.approx(all_returns.min()) and float(high) == pytest.approx(30.0)
  np.testing.assert_array_equal(buffer.heap_length, [4, 6, 0])
  assert int(replay.heap_stored(buffer)) == 10


def test_batch_is_half_ring_half_heap_with_the_originals_normalisation(repo_root):
  """512-row batches: rows [0, 256) uniform over the ring's 30 stored transitions, rows
  [256, 512) uniform over the heap's 10 (chi-square, 99.9%), and every reward equals the NumPy
  (R - min) / (max - min) over the ring's episodes plus the heap's."""
  buffer, ring, heap = _ircr_buffer()
  config = online_config(repo_root)
  settings = [learner.kind_settings(config, "ircr")]
  assert settings[0].batch_size == 512 and settings[0].heap

  @jax.jit
  def draw(key):
    batch, (low, high) = learner._sac_batch(buffer, key, 0, settings)  # pylint: disable=protected-access
    return batch, rewards.transition_rewards("ircr", batch, low, high)

  ring_obs = np.concatenate([e.observation for e in ring])[-30:]
  heap_obs = np.concatenate([e.observation for e in heap])
  ring_counts, heap_counts = np.zeros(30), np.zeros(10)
  returns = np.concatenate([np.full(len(e), e.episode_return) for e in ring])[-30:]
  low = min(returns.min(), min(e.episode_return for e in heap))
  high = max(returns.max(), max(e.episode_return for e in heap))
  for seed in range(20):
    batch, reward = jax.device_get(draw(jax.random.PRNGKey(seed)))
    obs = batch["observation"]
    first = (obs[:256, None] == ring_obs[None]).all(-1)
    second = (obs[256:, None] == heap_obs[None]).all(-1)
    assert first.any(1).all() and second.any(1).all()
    ring_counts += first.sum(0)
    heap_counts += second.sum(0)
    np.testing.assert_allclose(reward, (batch["episode_return"] - low) / (high - low), rtol=1e-6)
    assert set(np.round(batch["episode_return"][256:], 4)) <= {-40.0, 30.0}
  for counts in (ring_counts, heap_counts):
    expected = counts.sum() / len(counts)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < stats.chi2.ppf(0.999, len(counts) - 1), counts


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
