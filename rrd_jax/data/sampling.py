"""RRD episode and step-index sampling (reference semantics, RRD_REFERENCE.md).

The batch plan for a training step is a pure function of (seed, step): the same plan is produced
after a resume, on any number of devices or processes (each takes its slice of the global plan).
"""

import dataclasses

import numpy as np

EPISODE_WEIGHTINGS = ("length", "uniform")


def episode_probabilities(episode_lengths, weighting="length"):
  """Probability of drawing each episode: proportional to its length T, or uniform."""
  lengths = np.asarray(episode_lengths, np.float64)
  if weighting == "length":
    weights = lengths
  elif weighting == "uniform":
    weights = np.ones_like(lengths)
  else:
    raise ValueError(f"unknown episode weighting {weighting!r}; expected one of {EPISODE_WEIGHTINGS}")
  return weights / weights.sum()


def sample_step_indices(rng, length, num_samples):
  """K step indices of an episode of length T: without replacement, or with replacement if K > T."""
  if num_samples > length:
    return np.sort(rng.integers(0, length, size=num_samples))
  return np.sort(rng.choice(length, size=num_samples, replace=False))


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  episode_ids: np.ndarray  # [B] int64, positions in the dataset index
  sample_indices: np.ndarray  # [B, K] int32, step indices within each episode


class RRDSampler:
  """Draws `episodes_per_batch` episodes (i.i.d., with replacement) and K steps in each."""

  def __init__(self, episode_lengths, *, episodes_per_batch, sample_size, seed,
               weighting="length"):
    self.episode_lengths = np.asarray(episode_lengths, np.int64)
    self.probabilities = episode_probabilities(self.episode_lengths, weighting)
    self.episodes_per_batch = int(episodes_per_batch)
    self.sample_size = int(sample_size)
    self.seed = int(seed)

  def plan(self, step):
    rng = np.random.default_rng([self.seed, int(step)])
    episode_ids = rng.choice(len(self.episode_lengths), size=self.episodes_per_batch,
                             p=self.probabilities)
    sample_indices = np.stack([
        sample_step_indices(rng, self.episode_lengths[e], self.sample_size) for e in episode_ids
    ]).astype(np.int32)
    return BatchPlan(episode_ids=episode_ids.astype(np.int64), sample_indices=sample_indices)
