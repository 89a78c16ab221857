"""Plots of predicted rewards (matplotlib, headless): per-episode rewards and cumulative returns,
predicted vs true returns, and the reward histogram."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position


def episodes_figure(predicted, true, titles, max_episodes=6):
  """Per episode: predicted and dataset reward along time (top), their running sums (bottom)."""
  count = min(max_episodes, len(predicted))
  fig, axes = plt.subplots(2, count, figsize=(3.2 * count, 5.2), squeeze=False, sharex="col")
  for i in range(count):
    steps = np.arange(len(predicted[i]))
    top, bottom = axes[0, i], axes[1, i]
    top.plot(steps, true[i], color="0.6", lw=1, label="dataset reward")
    top.plot(steps, predicted[i], color="C0", lw=1.2, label="predicted")
    bottom.plot(steps, np.cumsum(true[i]), color="0.6", lw=1, label="dataset return so far")
    bottom.plot(steps, np.cumsum(predicted[i]), color="C1", lw=1.2, label="predicted return so far")
    top.set_title(titles[i], fontsize=8)
    bottom.set_xlabel("step")
  axes[0, 0].set_ylabel("reward")
  axes[1, 0].set_ylabel("cumulative return")
  axes[0, 0].legend(fontsize=7, loc="upper left")
  axes[1, 0].legend(fontsize=7, loc="upper left")
  fig.tight_layout()
  return fig


def returns_figure(true_returns, predicted_returns):
  fig, ax = plt.subplots(figsize=(4.2, 4.0))
  ax.scatter(true_returns, predicted_returns, s=8, alpha=0.6)
  low = float(min(np.min(true_returns), np.min(predicted_returns)))
  high = float(max(np.max(true_returns), np.max(predicted_returns)))
  ax.plot([low, high], [low, high], color="0.5", lw=1, ls="--")
  ax.set_xlabel("true return")
  ax.set_ylabel("predicted return (sum of rewards)")
  fig.tight_layout()
  return fig


def histogram_figure(rewards):
  fig, ax = plt.subplots(figsize=(4.2, 3.2))
  ax.hist(rewards, bins=50)
  ax.set_xlabel("predicted per-step reward")
  ax.set_ylabel("steps")
  fig.tight_layout()
  return fig


def save(fig, path):
  fig.savefig(path, dpi=110)
  plt.close(fig)


def to_rgb_array(fig):
  """[H, W, 3] uint8 rendering (for TensorBoard images)."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=80)
  plt.close(fig)
  buffer.seek(0)
  image = plt.imread(buffer, format="png")
  return (image[..., :3] * 255).astype(np.uint8)
