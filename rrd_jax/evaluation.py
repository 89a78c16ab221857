"""Whole-episode reward predictions and the statistics that say whether the reward was recovered."""

import numpy as np

from rrd_jax import parallel
from rrd_jax.data import pipeline


def predict_episodes(predict_fn, params, loader, episode_ids, *, batch_size, sharding,
                     progress=None):
  """Predicted and dataset rewards for every step of `episode_ids`, as two lists of [T_i] arrays."""
  positions, predictions, true_rewards = [], [], []
  dataset = pipeline.episode_steps_dataset(loader, episode_ids, batch_size=batch_size)
  lo, hi = parallel.process_rows(batch_size)  # every process holds the batch; each feeds its rows
  for batch in dataset.as_numpy_iterator():
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
