"""Whole-episode reward predictions and the statistics that say whether the reward was recovered."""

import numpy as np

from rrd_jax.data import pipeline
from rrd_jax.run import parallel


def predict_episodes(predict_fn, params, loader, episode_ids, *, batch_size, sharding,
                     progress=None, instruction_ids=None):
  """Predicted and dataset rewards for every step of `episode_ids`, as two lists of [T_i] arrays.

  instruction_ids: condition each episode on these instructions instead of its own."""
  positions, predictions, true_rewards = [], [], []
  batches = pipeline.episode_step_batches(loader, episode_ids, batch_size=batch_size,
                                          instruction_ids=instruction_ids)
  lo, hi = parallel.process_rows(batch_size)  # every process holds the batch; each feeds its rows
  for batch in batches:
    valid = batch["valid"]
    padded = pipeline.pad_batch(batch, batch_size)
    local = {k: v[lo:hi] for k, v in padded.items()}
    rewards = np.asarray(predict_fn(params, parallel.to_global(local, sharding)))
    positions.append(batch["episode_pos"])
    predictions.append(rewards[: len(valid)])
    true_rewards.append(batch["true_reward"])
    if progress is not None:
      progress.update(len(valid))
  positions = np.concatenate(positions)
  predictions = np.concatenate(predictions)
  true_rewards = np.concatenate(true_rewards)
  splits = np.cumsum(np.bincount(positions, minlength=len(episode_ids)))[:-1]
  return np.split(predictions, splits), np.split(true_rewards, splits)


def _pearson(x, y):
  x = x - x.mean()
  y = y - y.mean()
  denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
  # A constant predictor carries no information: score it 0 rather than undefined.
  return float(np.sum(x * y) / denominator) if denominator > 0 else 0.0


def reward_statistics(predicted, true, episode_returns):
  """Agreement of predicted per-step rewards with the dataset's rewards.

  within_pearson: correlation after removing each episode's mean from both (does the model know
    which steps earned the return?); the uniform redistribution R/T scores 0 here.
  pooled_pearson: correlation over all steps pooled (uniform R/T already scores high here).
  return_r2 / return_mse: sum of predicted rewards vs the true return, over episodes.
  """
  predicted_returns = np.asarray([p.sum() for p in predicted], np.float64)
  episode_returns = np.asarray(episode_returns, np.float64)
  pooled_pred = np.concatenate(predicted).astype(np.float64)
  pooled_true = np.concatenate(true).astype(np.float64)
  within_pred = np.concatenate([p - p.mean() for p in predicted]).astype(np.float64)
  within_true = np.concatenate([t - t.mean() for t in true]).astype(np.float64)
  residual = np.sum(np.square(predicted_returns - episode_returns))
  total = np.sum(np.square(episode_returns - episode_returns.mean()))
  return {
      "within_pearson": _pearson(within_pred, within_true),
      "pooled_pearson": _pearson(pooled_pred, pooled_true),
      "return_r2": float(1.0 - residual / total) if total > 0 else float("nan"),
      "return_mse": float(residual / len(episode_returns)),
      "episodes": len(predicted),
      "steps": int(len(pooled_pred)),
  }


def roc_auc(positive_scores, negative_scores):
  """P(score of a random positive > score of a random negative), ties counting 1/2
  (the Mann-Whitney U statistic / (n_pos * n_neg)); nan when either set is empty."""
  pos = np.asarray(positive_scores, np.float64)
  neg = np.asarray(negative_scores, np.float64)
  if not len(pos) or not len(neg):
    return float("nan")
  scores = np.concatenate([pos, neg])
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores), np.float64)
  sorted_scores = scores[order]
  # average ranks over ties (1-based)
  _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  average = first + (counts + 1) / 2.0
  ranks[order] = np.repeat(average, counts)
  u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
  return float(u / (len(pos) * len(neg)))


def overfitting_warning(history, patience=3):
  """A warning line when the held-out eval/loss rose at each of the last `patience` evaluations
  while the train_eval/loss fell over them, else None. history: the evaluations' metric dicts,
  oldest first."""
  recent = history[-(patience + 1):]
  if len(recent) < patience + 1 or not all("train_eval/loss" in r for r in recent):
    return None
  held_out = [r["eval/loss"] for r in recent]
  train = [r["train_eval/loss"] for r in recent]
  if all(b > a for a, b in zip(held_out, held_out[1:])) and train[-1] < train[0]:
    return (f"warning: the held-out eval/loss rose at each of the last {patience} evaluations "
            f"({held_out[0]:.4g} -> {held_out[-1]:.4g}) while the train_eval/loss fell "
            f"({train[0]:.4g} -> {train[-1]:.4g}): the model is overfitting its training episodes "
            "(predict and relabel use the best checkpoint by default)")
  return None


def side_by_side(results):
  """ "held-out vs train episodes: loss a vs b, within_pearson c vs d" from eval results."""
  pairs = [f"{name} {results[f'eval/{name}']:.4g} vs {results[f'train_eval/{name}']:.4g}"
           for name in ("loss", "within_pearson", "return_r2")
           if f"eval/{name}" in results and f"train_eval/{name}" in results]
  return "held-out vs training episodes: " + ", ".join(pairs) if pairs else ""
