"""Tests of rrd_jax.model.losses against an independent NumPy reference (docs/ALGORITHM.md, "Losses")."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrd_jax.model.losses import rrd_episode_losses, rrd_loss

RTOL = 1e-5
ATOL = 1e-6


# ---------------------------------------------------------------------------------------------
# Independent reference: a per-episode loop in plain float64 NumPy, written from the equations.
# ---------------------------------------------------------------------------------------------
def ref_episode_loss(preds, ret, length, form="mean", bias_correction=False):
  preds = np.asarray(preds, np.float64)
  k = preds.shape[0]
  t = float(length)
  m = preds.sum() / k
  loss = (m - ret / t) ** 2  # L-Rand-RD, mean form
  if bias_correction:
    if k < 2:
      raise ValueError("K must be > 1")
    if t == 1:
      correction = 0.0
    else:
      s2 = ((preds - m) ** 2).sum() / (k - 1)  # unbiased sample variance
      fpc = 1.0 if k > t else (1.0 - k / t)  # with replacement when K > T
      correction = s2 / k * fpc
    loss = loss - correction
  if form == "return":
    loss = loss * t * t  # correction scaled by T^2 as well
  return loss


def ref_episode_losses(preds, returns, lengths, form="mean", bias_correction=False):
  return np.array([
      ref_episode_loss(preds[i], returns[i], lengths[i], form, bias_correction)
      for i in range(len(returns))
  ])


def ref_loss(preds, returns, lengths, form="mean", bias_correction=False, weights=None):
  losses = ref_episode_losses(preds, returns, lengths, form, bias_correction)
  if weights is None:
    return losses.mean()
  total, wsum = 0.0, 0.0
  for loss, w in zip(losses, weights):
    if w == 0:
      continue
    total += w * loss
    wsum += w
  return total / wsum


def make_batch(rng, lengths, k):
  lengths = np.asarray(lengths, np.int64)
  preds = rng.normal(size=(len(lengths), k)).astype(np.float32)
  returns = (rng.normal(size=len(lengths)) * lengths).astype(np.float32)
  return preds, returns, lengths


CASES = {
    "K<T": ([10, 20, 37, 100], 4),
    "K==T": ([4, 4, 4], 4),
    "K>T": ([2, 3, 5], 8),
    "T==1": ([1, 1, 1], 3),
    "mixed": ([1, 2, 3, 4, 5, 6, 50, 1000], 4),
}


# ---------------------------------------------------------------------------------------------
# Sanity checks of the reference itself (so a reference bug cannot mask an implementation bug).
# ---------------------------------------------------------------------------------------------
def test_reference_hand_computed():
  preds = np.array([1.0, 2.0, 6.0])  # m = 3, s^2 = (4 + 1 + 9) / 2 = 7
  assert ref_episode_loss(preds, 10.0, 5) == pytest.approx((3 - 2) ** 2)
  assert ref_episode_loss(preds, 10.0, 5, "return") == pytest.approx((15 - 10) ** 2)
  corr = 7 / 3 * (1 - 3 / 5)
  assert ref_episode_loss(preds, 10.0, 5, bias_correction=True) == pytest.approx(1 - corr)
  assert ref_episode_loss(preds, 10.0, 5, "return", True) == pytest.approx(25 * (1 - corr))
  assert ref_episode_loss(preds, 6.0, 3, bias_correction=True) == pytest.approx(1.0)  # K == T
  assert ref_episode_loss(preds, 4.0, 2, bias_correction=True) == pytest.approx(1 - 7 / 3)  # K > T
  assert ref_episode_loss(preds, 3.0, 1, bias_correction=True) == pytest.approx(0.0)  # T == 1


def test_hand_computed_values():
  preds = np.array([[1.0, 2.0, 6.0]], np.float32)
  got = rrd_episode_losses(preds, np.array([10.0]), np.array([5]), bias_correction=True)
  np.testing.assert_allclose(np.asarray(got), [1 - 7 / 3 * 0.4], rtol=RTOL)
  got = rrd_episode_losses(preds, np.array([10.0]), np.array([5]), form="return")
  np.testing.assert_allclose(np.asarray(got), [25.0], rtol=RTOL)


# ---------------------------------------------------------------------------------------------
# Comparison with the reference.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("form", ["mean", "return"])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_matches_reference(case, form, bias_correction):
  lengths, k = CASES[case]
  seed = sorted(CASES).index(case) * 4 + ("mean", "return").index(form) * 2 + bias_correction
  rng = np.random.default_rng(seed)
  preds, returns, lengths = make_batch(rng, lengths, k)
  want = ref_episode_losses(preds, returns, lengths, form, bias_correction)
  got = rrd_episode_losses(preds, returns, lengths, form=form, bias_correction=bias_correction)
  assert got.shape == (len(lengths),)
  # per-row tolerance: rtol on the row's loss, plus float32 round-off of its two terms (the
  # corrected loss is a difference and may be ~0)
  mag = (ref_episode_losses(preds, returns, lengths, form, False)
         + np.abs(want - ref_episode_losses(preds, returns, lengths, form, False)))
  err = np.abs(np.asarray(got, np.float64) - want)
  assert np.all(err <= RTOL * np.abs(want) + ATOL * mag), (np.asarray(got), want)
  got_batch = rrd_loss(preds, returns, lengths, form=form, bias_correction=bias_correction)
  np.testing.assert_allclose(float(got_batch), want.mean(), rtol=RTOL, atol=ATOL * mag.mean())


def test_default_form_is_mean_without_correction():
  preds, returns, lengths = make_batch(np.random.default_rng(0), [7, 30, 2], 5)
  np.testing.assert_allclose(
      np.asarray(rrd_episode_losses(preds, returns, lengths)),
      ref_episode_losses(preds, returns, lengths, "mean", False), rtol=RTOL)


def test_k_equals_t_correction_is_zero():
  preds, returns, lengths = make_batch(np.random.default_rng(1), [6, 6, 6, 6], 6)
  for form in ("mean", "return"):
    a = rrd_episode_losses(preds, returns, lengths, form=form, bias_correction=False)
    b = rrd_episode_losses(preds, returns, lengths, form=form, bias_correction=True)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=RTOL, atol=1e-6)


def test_t_equals_one_correction_is_zero():
  preds, returns, lengths = make_batch(np.random.default_rng(2), [1, 1, 1], 4)
  a = rrd_episode_losses(preds, returns, lengths, bias_correction=False)
  b = rrd_episode_losses(preds, returns, lengths, bias_correction=True)
  np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=RTOL)
  # and the predictions do vary, so a nonzero correction would be visible
  assert np.var(preds, axis=1).min() > 1e-3


def test_k_greater_than_t_full_correction():
  preds, returns, lengths = make_batch(np.random.default_rng(3), [2, 3, 5], 6)
  a = np.asarray(rrd_episode_losses(preds, returns, lengths))
  b = np.asarray(rrd_episode_losses(preds, returns, lengths, bias_correction=True))
  s2 = np.var(preds.astype(np.float64), axis=1, ddof=1)
  np.testing.assert_allclose(a - b, s2 / 6, rtol=1e-4)


def test_mixed_lengths_rows_independent():
  """Each row of a mixed-T batch equals the same episode evaluated alone."""
  preds, returns, lengths = make_batch(np.random.default_rng(4), [1, 3, 4, 9, 200], 4)
  batch = np.asarray(rrd_episode_losses(preds, returns, lengths, bias_correction=True,
                                        form="return"))
  for i in range(len(lengths)):
    alone = rrd_episode_losses(preds[i:i + 1], returns[i:i + 1], lengths[i:i + 1],
                               bias_correction=True, form="return")
    np.testing.assert_allclose(batch[i], float(alone[0]), rtol=RTOL)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_return_form_is_mean_form_times_t_squared(bias_correction):
  preds, returns, lengths = make_batch(np.random.default_rng(5), [1, 2, 4, 5, 13, 80], 4)
  mean = np.asarray(rrd_episode_losses(preds, returns, lengths, form="mean",
                                       bias_correction=bias_correction), np.float64)
  ret = np.asarray(rrd_episode_losses(preds, returns, lengths, form="return",
                                      bias_correction=bias_correction), np.float64)
  t2 = lengths.astype(np.float64) ** 2
  np.testing.assert_allclose(ret, mean * t2, rtol=1e-5, atol=1e-6 * np.abs(ret).max())


def test_return_form_correction_scaled_by_t_squared():
  """Regression for the PyTorch fork's bug: (T*m - R)^2 - s^2/K*(1-K/T) (unscaled) is wrong."""
  preds, returns, lengths = make_batch(np.random.default_rng(6), [10, 40], 4)
  got = np.asarray(rrd_episode_losses(preds, returns, lengths, form="return",
                                      bias_correction=True), np.float64)
  p = preds.astype(np.float64)
  t = lengths.astype(np.float64)
  m = p.mean(1)
  corr = np.var(p, axis=1, ddof=1) / 4 * (1 - 4 / t)
  buggy = (t * m - returns) ** 2 - corr
  right = (t * m - returns) ** 2 - t ** 2 * corr
  np.testing.assert_allclose(got, right, rtol=1e-5)
  assert np.all(np.abs(got - buggy) > 1e-2)  # the fixture distinguishes the two


# ---------------------------------------------------------------------------------------------
# Episode weights.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("form", ["mean", "return"])
def test_episode_weights_weighted_mean(form, bias_correction):
  preds, returns, lengths = make_batch(np.random.default_rng(7), [3, 8, 20, 1, 50], 3)
  weights = np.array([0.5, 2.0, 1.0, 3.0, 0.25], np.float32)
  got = rrd_loss(preds, returns, lengths, form=form, bias_correction=bias_correction,
                 episode_weights=weights)
  want = ref_loss(preds, returns, lengths, form, bias_correction, weights)
  np.testing.assert_allclose(float(got), want, rtol=RTOL)
  # and it is not just the unweighted mean
  unweighted = ref_loss(preds, returns, lengths, form, bias_correction)
  assert abs(want - unweighted) > 1e-3 * abs(unweighted)


def test_zero_weight_rows_ignored():
  rng = np.random.default_rng(8)
  preds, returns, lengths = make_batch(rng, [5, 12, 30], 4)
  # padded batch: two garbage rows with huge values and weight 0
  pad_preds = np.concatenate([preds, np.full((2, 4), 1e3, np.float32)])
  pad_preds[-1] = [1e3, -1e3, 5e2, 0]
  pad_returns = np.concatenate([returns, np.array([-1e4, 7e3], np.float32)])
  pad_lengths = np.concatenate([lengths, np.array([1, 3])])
  weights = np.array([1, 1, 1, 0, 0], np.float32)
  for form in ("mean", "return"):
    for bc in (False, True):
      got = rrd_loss(pad_preds, pad_returns, pad_lengths, form=form, bias_correction=bc,
                     episode_weights=weights)
      want = ref_loss(preds, returns, lengths, form, bc)
      np.testing.assert_allclose(float(got), want, rtol=RTOL)
      unpadded = rrd_loss(preds, returns, lengths, form=form, bias_correction=bc)
      np.testing.assert_allclose(float(got), float(unpadded), rtol=RTOL)


def test_uniform_weights_equal_unweighted_mean():
  preds, returns, lengths = make_batch(np.random.default_rng(9), [4, 9, 16], 3)
  a = rrd_loss(preds, returns, lengths, episode_weights=np.full(3, 2.5, np.float32))
  b = rrd_loss(preds, returns, lengths)
  np.testing.assert_allclose(float(a), float(b), rtol=RTOL)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("form", ["mean", "return"])
def test_traced_bias_correction_flag_matches_reference(case, form):
  """A traced [] bool flag (a vmapped population mixing rrd and rrd_lrd) selects per member
  the same loss the static flag gives, vs the NumPy reference."""
  lengths, k = CASES[case]
  preds, returns, lengths = make_batch(np.random.default_rng(7), lengths, k)
  flags = jnp.asarray([False, True])
  got = jax.jit(jax.vmap(lambda flag: rrd_episode_losses(preds, returns, lengths, form=form,
                                                         bias_correction=flag)))(flags)
  uncorrected = ref_episode_losses(preds, returns, lengths, form, False)
  for flag, row in zip((False, True), np.asarray(got, np.float64)):
    want = ref_episode_losses(preds, returns, lengths, form, flag)
    mag = uncorrected + np.abs(want - uncorrected)  # as in test_matches_reference
    assert np.all(np.abs(row - want) <= RTOL * np.abs(want) + ATOL * mag), (flag, row, want)


def test_traced_bias_correction_needs_k_two():
  with pytest.raises(ValueError, match="K >= 2"):
    jax.jit(lambda flag: rrd_loss(np.ones((3, 1), np.float32), np.ones(3), np.array([2, 3, 4]),
                                  bias_correction=flag))(jnp.asarray(False))


# ---------------------------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------------------------
def test_k_one_with_bias_correction_raises():
  preds = np.ones((3, 1), np.float32)
  with pytest.raises(ValueError):
    rrd_episode_losses(preds, np.ones(3), np.array([2, 3, 4]), bias_correction=True)
  with pytest.raises(ValueError):
    rrd_loss(preds, np.ones(3), np.array([2, 3, 4]), bias_correction=True)
  # without correction K == 1 is fine
  got = rrd_episode_losses(preds, np.ones(3), np.array([2, 3, 4]))
  np.testing.assert_allclose(np.asarray(got), ref_episode_losses(preds, np.ones(3), [2, 3, 4]),
                             rtol=RTOL)


@pytest.mark.parametrize("form", ["sum", "Mean", "", None])
def test_unknown_form_raises(form):
  preds = np.ones((2, 3), np.float32)
  with pytest.raises(ValueError):
    rrd_episode_losses(preds, np.ones(2), np.array([3, 4]), form=form)
  with pytest.raises(ValueError):
    rrd_loss(preds, np.ones(2), np.array([3, 4]), form=form)


# ---------------------------------------------------------------------------------------------
# Statistical: the bias-corrected estimator is unbiased for L-RD.
# ---------------------------------------------------------------------------------------------
def _lrd(r, ret):
  """L-RD (mean form) on the whole episode: (mean(r) - R/T)^2."""
  return (r.mean() - ret / len(r)) ** 2


def _var_m(r, k, replace):
  sigma2 = r.var()  # population variance (ddof=0)
  t = len(r)
  if replace:
    return sigma2 / k
  return sigma2 * t / (t - 1) / k * (1 - k / t)


def _episode():
  rng = np.random.default_rng(123)
  r = rng.normal(loc=0.3, scale=2.0, size=20)
  ret = r.sum() + 1.7  # R != sum(r): the model does not fit the return exactly
  return r, ret


def test_bias_correction_exact_expectation_without_replacement():
  """Averaging over all C(20, 5) subsets gives exactly L-RD (corrected) / L-RD + Var(m)."""
  r, ret = _episode()
  t, k = len(r), 5
  combos = np.array(list(itertools.combinations(range(t), k)))  # 15504
  preds = r[combos].astype(np.float32)
  n = len(preds)
  rets = np.full(n, ret, np.float32)
  lens = np.full(n, t)
  corrected = float(rrd_loss(preds, rets, lens, bias_correction=True))
  plain = float(rrd_loss(preds, rets, lens, bias_correction=False))
  lrd = _lrd(r, ret)
  var_m = _var_m(r, k, replace=False)
  np.testing.assert_allclose(corrected, lrd, rtol=1e-4, atol=1e-5 * var_m)
  np.testing.assert_allclose(plain, lrd + var_m, rtol=1e-4)


def test_bias_correction_exact_expectation_with_replacement():
  """K > T: averaging over all T^K index tuples (with replacement) gives L-RD exactly."""
  rng = np.random.default_rng(5)
  r = rng.normal(size=3)
  ret = r.sum() - 0.9
  t, k = 3, 6
  tuples = np.array(list(itertools.product(range(t), repeat=k)))  # 729
  preds = r[tuples].astype(np.float32)
  n = len(preds)
  corrected = float(rrd_loss(preds, np.full(n, ret), np.full(n, t), bias_correction=True))
  plain = float(rrd_loss(preds, np.full(n, ret), np.full(n, t)))
  lrd = _lrd(r, ret)
  var_m = _var_m(r, k, replace=True)
  np.testing.assert_allclose(corrected, lrd, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(plain, lrd + var_m, rtol=1e-4)


def _check_monte_carlo(r, ret, k, replace, n_draws=20000, seed=0):
  t = len(r)
  rng = np.random.default_rng(seed)
  if replace:
    idx = rng.integers(0, t, size=(n_draws, k))
  else:
    idx = np.argsort(rng.random((n_draws, t)), axis=1)[:, :k]  # uniform K-subsets
  preds = r[idx].astype(np.float32)
  rets = np.full(n_draws, ret, np.float32)
  lens = np.full(n_draws, t)
  corrected = np.asarray(rrd_episode_losses(preds, rets, lens, bias_correction=True), np.float64)
  plain = np.asarray(rrd_episode_losses(preds, rets, lens), np.float64)
  lrd = _lrd(r, ret)
  var_m = _var_m(r, k, replace)
  se_c = corrected.std() / np.sqrt(n_draws)
  se_p = plain.std() / np.sqrt(n_draws)
  # unbiased for L-RD: within 4 standard errors (and the SE is small relative to the bias)
  assert abs(corrected.mean() - lrd) < 4 * se_c
  assert 4 * se_c < 0.25 * var_m
  # the uncorrected L-Rand-RD is biased upward by Var(m)
  assert abs(plain.mean() - (lrd + var_m)) < 4 * se_p
  assert plain.mean() - lrd > 0.5 * var_m


def test_bias_correction_monte_carlo_without_replacement():
  r, ret = _episode()
  _check_monte_carlo(r, ret, k=5, replace=False)


def test_bias_correction_monte_carlo_with_replacement():
  r, ret = _episode()
  r = r[:4]
  ret = r.sum() + 0.6
  _check_monte_carlo(r, ret, k=7, replace=True, seed=1)


def test_return_form_bias_correction_unbiased_for_t2_lrd():
  r, ret = _episode()
  t, k = len(r), 5
  rng = np.random.default_rng(11)
  idx = np.argsort(rng.random((20000, t)), axis=1)[:, :k]
  preds = r[idx].astype(np.float32)
  losses = np.asarray(rrd_episode_losses(preds, np.full(len(idx), ret), np.full(len(idx), t),
                                         form="return", bias_correction=True), np.float64)
  se = losses.std() / np.sqrt(len(losses))
  target = (r.sum() - ret) ** 2  # T^2 * L-RD
  assert abs(losses.mean() - target) < 4 * se
  assert 4 * se < 0.25 * t * t * _var_m(r, k, False)


# ---------------------------------------------------------------------------------------------
# JAX transformations.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("form", ["mean", "return"])
def test_grad_finite_and_correct(form, bias_correction):
  preds, returns, lengths = make_batch(np.random.default_rng(12), [1, 2, 4, 9, 30], 4)
  weights = np.array([1, 0, 1, 2, 1], np.float32)

  def f(p):
    return rrd_loss(p, returns, lengths, form=form, bias_correction=bias_correction,
                    episode_weights=weights)

  g = np.asarray(jax.grad(f)(jnp.asarray(preds)))
  assert g.shape == preds.shape
  assert np.all(np.isfinite(g))
  assert np.abs(g).max() > 0
  np.testing.assert_array_equal(g[1], 0.0)  # zero-weight row gets no gradient
  # central finite differences against the float64 reference
  eps = 1e-4
  p64 = preds.astype(np.float64)
  fd = np.zeros_like(p64)
  for i in range(p64.shape[0]):
    for j in range(p64.shape[1]):
      hi, lo = p64.copy(), p64.copy()
      hi[i, j] += eps
      lo[i, j] -= eps
      fd[i, j] = (ref_loss(hi, returns, lengths, form, bias_correction, weights)
                  - ref_loss(lo, returns, lengths, form, bias_correction, weights)) / (2 * eps)
  np.testing.assert_allclose(g, fd, rtol=1e-3, atol=1e-3 * np.abs(fd).max())


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("form", ["mean", "return"])
def test_jit_matches_eager(form, bias_correction):
  preds, returns, lengths = make_batch(np.random.default_rng(13), [2, 5, 11, 64], 5)
  weights = np.array([1, 1, 0.5, 2], np.float32)
  fn = jax.jit(lambda p, r, t, w: rrd_loss(p, r, t, form=form, bias_correction=bias_correction,
                                           episode_weights=w))
  got = fn(preds, returns, lengths, weights)
  want = ref_loss(preds, returns, lengths, form, bias_correction, weights)
  np.testing.assert_allclose(float(got), want, rtol=RTOL)
  # lengths are traced here; the same compiled function works for other lengths
  lengths2 = np.array([1, 3, 20, 4])
  got2 = fn(preds, returns, lengths2, weights)
  np.testing.assert_allclose(float(got2),
                             ref_loss(preds, returns, lengths2, form, bias_correction, weights),
                             rtol=RTOL)
  grad = jax.jit(jax.grad(lambda p: fn(p, returns, lengths, weights)))(jnp.asarray(preds))
  assert np.all(np.isfinite(np.asarray(grad)))
