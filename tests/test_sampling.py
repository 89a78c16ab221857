"""Tests of rrd_jax.data.sampling (docs/ALGORITHM.md, "Sampling")."""

import itertools

import numpy as np
import pytest

from rrd_jax.data.sampling import (RRDSampler, SamplerOptions, episode_probabilities,
                                   sample_step_indices)

LENGTHS = np.array([5, 10, 20, 65])


def make_sampler(lengths=LENGTHS, b=8, k=4, seed=0, weighting="length"):
  return RRDSampler(lengths, SamplerOptions(b, k, seed=seed, weighting=weighting))


def plans(sampler, steps):
  eps, idx = [], []
  for s in steps:
    p = sampler.plan(s)
    eps.append(p.episode_ids)
    idx.append(p.sample_indices)
  return np.concatenate(eps), np.concatenate(idx)


def _sorted_unique_per_row(idx):
  """True where a row of idx has no repeated value."""
  s = np.sort(idx, axis=1)
  return np.all(s[:, 1:] != s[:, :-1], axis=1)


# ---------------------------------------------------------------------------------------------
# episode_probabilities
# ---------------------------------------------------------------------------------------------
def test_episode_probabilities_length():
  p = episode_probabilities([5, 10, 20, 65])
  np.testing.assert_allclose(p, [0.05, 0.10, 0.20, 0.65], rtol=1e-12)
  np.testing.assert_allclose(episode_probabilities([5, 10, 20, 65], "length"), p)
  assert p.sum() == pytest.approx(1.0)


def test_episode_probabilities_uniform():
  p = episode_probabilities([5, 10, 20, 65], "uniform")
  np.testing.assert_allclose(p, [0.25] * 4, rtol=1e-12)


@pytest.mark.parametrize("weighting", ["Length", "steps", "", None, "proportional"])
def test_unknown_weighting_raises(weighting):
  with pytest.raises(ValueError):
    episode_probabilities([1, 2, 3], weighting)
  with pytest.raises(ValueError):
    RRDSampler([1, 2, 3], SamplerOptions(2, 1, seed=0, weighting=weighting))


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------
def test_plan_deterministic_given_seed_and_step():
  a, b = make_sampler(seed=7), make_sampler(seed=7)
  for step in [0, 1, 5, 123456, 2**40]:
    pa, pb = a.plan(step), b.plan(step)
    np.testing.assert_array_equal(pa.episode_ids, pb.episode_ids)
    np.testing.assert_array_equal(pa.sample_indices, pb.sample_indices)
  # order of calls does not matter (no hidden state): replay step 3 after others
  first = a.plan(3)
  a.plan(4)
  a.plan(0)
  again = a.plan(3)
  np.testing.assert_array_equal(first.episode_ids, again.episode_ids)
  np.testing.assert_array_equal(first.sample_indices, again.sample_indices)
  # numpy integer steps behave like Python ints
  np.testing.assert_array_equal(a.plan(np.int64(3)).sample_indices, first.sample_indices)


def _plan_key(p):
  return (p.episode_ids.tobytes(), p.sample_indices.tobytes())


def test_plans_differ_across_steps():
  s = make_sampler(b=16, k=4, seed=0)
  keys = {_plan_key(s.plan(step)) for step in range(50)}
  assert len(keys) == 50


def test_plans_differ_across_seeds():
  keys = {_plan_key(make_sampler(b=16, k=4, seed=seed).plan(0)) for seed in range(50)}
  assert len(keys) == 50
  # (seed, step) pairs are not confused with each other, e.g. (0, 1) vs (1, 0)
  assert _plan_key(make_sampler(seed=0, b=16).plan(1)) != _plan_key(make_sampler(seed=1, b=16).plan(0))


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, ranges
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b,k", [(1, 1), (8, 4), (32, 5), (3, 100)])
def test_plan_shapes_and_dtypes(b, k):
  p = make_sampler(b=b, k=k).plan(0)
  assert p.episode_ids.shape == (b,)
  assert p.episode_ids.dtype == np.int64
  assert p.sample_indices.shape == (b, k)
  assert p.sample_indices.dtype == np.int32
  assert np.all((p.episode_ids >= 0) & (p.episode_ids < len(LENGTHS)))


def test_sample_step_indices_shape_and_range():
  rng = np.random.default_rng(0)
  for t, k in [(1, 1), (5, 5), (10, 3), (3, 10), (1, 4)]:
    idx = np.asarray(sample_step_indices(rng, t, k))
    assert idx.shape == (k,)
    assert np.issubdtype(idx.dtype, np.integer)
    assert idx.min() >= 0 and idx.max() < t


def test_no_repeats_and_in_range_when_k_le_t():
  lengths = np.array([4, 5, 9, 30, 200])
  k = 4  # K == T for the first episode, K < T for the rest
  s = make_sampler(lengths, b=256, k=k, seed=3)
  eps, idx = plans(s, range(40))
  t = lengths[eps][:, None]
  assert np.all(idx >= 0)
  assert np.all(idx < t)
  assert np.all(_sorted_unique_per_row(idx))
  # K == T: every step of the episode exactly once
  full = idx[eps == 0]
  assert len(full) > 100
  np.testing.assert_array_equal(np.sort(full, axis=1), np.tile(np.arange(4), (len(full), 1)))


def test_sample_step_indices_no_repeats_directly():
  rng = np.random.default_rng(1)
  for _ in range(2000):
    t = int(rng.integers(1, 40))
    k = int(rng.integers(1, t + 1))
    idx = np.asarray(sample_step_indices(rng, t, k))
    assert len(np.unique(idx)) == k
    assert idx.min() >= 0 and idx.max() < t


def test_k_greater_than_t_with_replacement():
  lengths = np.array([1, 2, 3])
  k = 7
  s = make_sampler(lengths, b=200, k=k, seed=4)
  eps, idx = plans(s, range(10))
  t = lengths[eps][:, None]
  assert np.all(idx >= 0) and np.all(idx < t)
  assert not np.any(_sorted_unique_per_row(idx))  # pigeonhole: repeats in every row
  for e, length in enumerate(lengths):
    rows = idx[eps == e]
    assert len(rows) > 50
    # the whole valid range is used, and nothing outside it
    np.testing.assert_array_equal(np.unique(rows), np.arange(length))
  # length-1 episode: all indices are 0
  np.testing.assert_array_equal(idx[eps == 0], 0)


def test_k_greater_than_t_uniform_with_replacement():
  """With replacement every index has probability 1/T at each draw (multinomial counts)."""
  s = make_sampler(np.array([3]), b=4000, k=6, seed=5)
  _, idx = plans(s, range(2))
  counts = np.bincount(idx.ravel(), minlength=3)
  freq = counts / counts.sum()
  np.testing.assert_allclose(freq, 1 / 3, rtol=0.03)
  # per-row count of a given index is Binomial(K, 1/T): its mean K/T and variance K/T(1-1/T)
  c0 = (idx == 0).sum(axis=1)
  assert abs(c0.mean() - 2.0) < 0.05
  assert abs(c0.var() - 6 * (1 / 3) * (2 / 3)) < 0.1


# ---------------------------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------------------------
def _chi_square(counts, probs):
  expected = counts.sum() * probs
  return float(((counts - expected) ** 2 / expected).sum())


# chi-square critical values at p = 0.001
CHI2_CRIT = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 9: 27.88}


def test_episode_frequency_proportional_to_length():
  s = make_sampler(LENGTHS, b=25000, k=1, seed=11)
  eps, _ = plans(s, range(4))  # 100k draws
  counts = np.bincount(eps, minlength=len(LENGTHS))
  probs = LENGTHS / LENGTHS.sum()
  freq = counts / counts.sum()
  assert np.max(np.abs(freq / probs - 1)) < 0.05
  assert _chi_square(counts, probs) < CHI2_CRIT[3]
  # and clearly not uniform
  assert _chi_square(counts, np.full(4, 0.25)) > 1000


def test_episode_frequency_uniform_weighting():
  s = make_sampler(LENGTHS, b=25000, k=1, seed=12, weighting="uniform")
  eps, _ = plans(s, range(4))
  counts = np.bincount(eps, minlength=len(LENGTHS))
  probs = np.full(4, 0.25)
  assert np.max(np.abs(counts / counts.sum() / probs - 1)) < 0.05
  assert _chi_square(counts, probs) < CHI2_CRIT[3]
  assert _chi_square(counts, LENGTHS / LENGTHS.sum()) > 1000


def test_episodes_drawn_with_replacement_iid():
  """Episodes are i.i.d. with replacement: duplicates appear within a batch larger than the set."""
  s = make_sampler(np.array([10, 10]), b=64, k=2, seed=0, weighting="uniform")
  eps, _ = plans(s, range(200))
  # a batch of 64 draws from 2 episodes has duplicates, and per-batch counts vary (binomial)
  per_batch = eps.reshape(200, 64).sum(axis=1)  # number of draws of episode 1 per batch
  assert per_batch.std() > 2.0  # Binomial(64, .5) std = 4
  assert abs(per_batch.mean() - 32) < 1.0


def test_step_marginal_uniform_within_episode():
  """K < T without replacement: each index is chosen with probability K/T."""
  t, k = 10, 3
  s = make_sampler(np.array([t]), b=10000, k=k, seed=13)
  _, idx = plans(s, range(2))  # 20k plans
  n = len(idx)
  counts = np.bincount(idx.ravel(), minlength=t)
  marginal = counts / n
  np.testing.assert_allclose(marginal, k / t, rtol=0.05)
  assert _chi_square(counts, np.full(t, 1 / t)) < CHI2_CRIT[9]


def test_step_marginal_mixed_lengths():
  lengths = np.array([6, 25])
  k = 4
  s = make_sampler(lengths, b=10000, k=k, seed=14, weighting="uniform")
  eps, idx = plans(s, range(2))
  for e, t in enumerate(lengths):
    rows = idx[eps == e]
    marginal = np.bincount(rows.ravel(), minlength=t) / len(rows)
    assert len(marginal) == t
    np.testing.assert_allclose(marginal, k / t, rtol=0.08)


def test_subsets_uniform_without_replacement():
  """All C(T, K) subsets are equally likely (not just the marginals)."""
  t, k = 5, 2
  s = make_sampler(np.array([t]), b=20000, k=k, seed=15)
  _, idx = plans(s, range(1))
  subsets = list(itertools.combinations(range(t), k))
  code = {c: i for i, c in enumerate(subsets)}
  ids = np.array([code[tuple(sorted(row))] for row in idx.tolist()])
  counts = np.bincount(ids, minlength=len(subsets))
  assert _chi_square(counts, np.full(len(subsets), 1 / len(subsets))) < CHI2_CRIT[9]


def test_sample_step_indices_marginal_directly():
  rng = np.random.default_rng(16)
  t, k = 8, 5
  counts = np.zeros(t)
  n = 8000
  for _ in range(n):
    counts[np.asarray(sample_step_indices(rng, t, k))] += 1
  np.testing.assert_allclose(counts / n, k / t, rtol=0.05)


@pytest.mark.parametrize("lengths,k", [([5], 2), ([3, 7, 1], 4), ([6, 1], 1)])
def test_in_jit_indices_follow_the_same_law(lengths, k):
  """sample_step_indices_in_jit (device caches, online replay): sorted, in range, distinct when
  K <= T with every K-subset equally likely, i.i.d. when K > T (including T = 1, K = 1)."""
  import jax  # pylint: disable=import-outside-toplevel
  from rrd_jax.data.sampling import sample_step_indices_in_jit  # pylint: disable=import-outside-toplevel
  n = 6000
  lengths = np.asarray(lengths, np.int32)
  draw = jax.jit(jax.vmap(lambda key: sample_step_indices_in_jit(
      key, jax.numpy.asarray(lengths), k, int(lengths.max()))))
  idx = np.asarray(draw(jax.random.split(jax.random.PRNGKey(0), n)))  # [n, B, K]
  assert idx.shape == (n, len(lengths), k) and idx.dtype == np.int32
  assert np.all(np.diff(idx, axis=-1) >= 0)
  for b, t in enumerate(lengths):
    rows = idx[:, b]
    assert rows.min() >= 0 and rows.max() < t
    if k <= t:
      assert all(len(set(r)) == k for r in rows.tolist())
      subsets = list(itertools.combinations(range(t), k))
      code = {c: i for i, c in enumerate(subsets)}
      counts = np.bincount([code[tuple(r)] for r in rows.tolist()], minlength=len(subsets))
      p = 1 / len(subsets)
      np.testing.assert_allclose(counts / n, p, atol=5 * np.sqrt(p / n))
    else:  # with replacement: every position, including repeats, uniformly
      np.testing.assert_allclose(np.bincount(rows.ravel(), minlength=t) / rows.size, 1 / t,
                                 atol=5 * np.sqrt(1 / t / rows.size))
      assert any(len(set(r)) < k for r in rows.tolist())
