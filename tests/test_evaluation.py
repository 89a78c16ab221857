"""The reward-recovery statistics against direct NumPy computations."""

import numpy as np
import pytest

from rrd_jax.train import evaluation
from rrd_jax.train.evaluation import reward_statistics


def episodes(seed=0, n=6):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 2, size=rng.integers(5, 15)).astype(np.float32) for _ in range(n)]


def test_perfect_prediction():
  true = episodes()
  stats = reward_statistics(true, true, [t.sum() for t in true])
  assert stats["within_pearson"] == pytest.approx(1.0)
  assert stats["pooled_pearson"] == pytest.approx(1.0)
  assert stats["return_r2"] == pytest.approx(1.0)
  assert stats["return_mse"] == pytest.approx(0.0)
  assert stats["steps"] == sum(len(t) for t in true) and stats["episodes"] == 6


def test_uniform_redistribution_scores_zero_within_but_high_pooled():
  rng = np.random.default_rng(1)
  # Episodes whose returns differ a lot: pooled correlation of R/T with the truth is high.
  true = [(rng.random(20) < p).astype(np.float32) for p in np.linspace(0.05, 0.95, 12)]
  returns = [t.sum() for t in true]
  uniform = [np.full(len(t), t.sum() / len(t)) for t in true]
  stats = reward_statistics(uniform, true, returns)
  assert abs(stats["within_pearson"]) < 1e-6
  assert stats["pooled_pearson"] > 0.5
  assert stats["return_r2"] == pytest.approx(1.0)


def test_matches_numpy_definitions():
  true = episodes(2)
  rng = np.random.default_rng(3)
  pred = [t + rng.normal(0, 0.5, size=len(t)) for t in true]
  returns = [t.sum() + 1.0 for t in true]
  stats = reward_statistics(pred, true, returns)
  within_p = np.concatenate([p - p.mean() for p in pred])
  within_t = np.concatenate([t - t.mean() for t in true])
  assert stats["within_pearson"] == pytest.approx(np.corrcoef(within_p, within_t)[0, 1], rel=1e-6)
  assert stats["pooled_pearson"] == pytest.approx(
      np.corrcoef(np.concatenate(pred), np.concatenate(true))[0, 1], rel=1e-6)
  sums = np.asarray([p.sum() for p in pred])
  r = np.asarray(returns)
  assert stats["return_mse"] == pytest.approx(np.mean((sums - r) ** 2), rel=1e-6)
  assert stats["return_r2"] == pytest.approx(1 - np.sum((sums - r) ** 2) / np.sum((r - r.mean()) ** 2),
                                             rel=1e-6)


def _evals(held_out, train):
  return [{"eval/loss": h, "train_eval/loss": t} for h, t in zip(held_out, train)]


def test_the_overfitting_warning_needs_a_held_out_rise_at_each_evaluation_while_train_falls():
  warning = evaluation.overfitting_warning(_evals([1.0, 0.5, 0.6, 0.7, 0.8],
                                                  [1.0, 0.5, 0.4, 0.3, 0.2]))
  assert warning.startswith("warning: the held-out eval/loss rose at each of the last 3 "
                            "evaluations (0.5 -> 0.8) while the train_eval/loss fell (0.5 -> 0.2)")
  for held_out, train in (([1.0, 0.6, 0.7, 0.8], [1.0, 0.5, 0.6, 1.1]),  # train rose too
                          ([1.0, 0.6, 0.7, 0.65], [1.0, 0.5, 0.4, 0.3]),  # not every time
                          ([0.6, 0.7, 0.8], [0.5, 0.4, 0.3])):  # too few evaluations
    assert evaluation.overfitting_warning(_evals(held_out, train)) is None
  assert evaluation.overfitting_warning([{"eval/loss": x} for x in (1, 2, 3, 4)]) is None


def test_side_by_side_pairs_the_held_out_and_training_figures():
  results = {"eval/loss": 0.5, "train_eval/loss": 0.25, "eval/within_pearson": 0.8,
             "train_eval/within_pearson": 0.9, "eval/success_auc": 1.0}
  assert evaluation.side_by_side(results) == (
      "held-out vs training episodes: loss 0.5 vs 0.25, within_pearson 0.8 vs 0.9")
  assert evaluation.side_by_side({"eval/loss": 0.5}) == ""
