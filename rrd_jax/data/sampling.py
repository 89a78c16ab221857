"""RRD episode and step-index sampling (reference semantics, docs/ALGORITHM.md, "Sampling").

The batch plan for a training step is a pure function of (seed, step): the same plan is produced
after a resume, on any number of devices or processes (each takes its slice of the global plan).
Mixtures: each episode belongs to a component with a weight; a component is drawn with probability
proportional to its weight, then an episode within it by the weighting (length or uniform).
Negatives: with probability `negatives_ratio` a sampled episode is conditioned on another task's
instruction (its return becomes the negative return; rrd_jax/data/returns.py).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rrd_jax.config.schema import EPISODE_WEIGHTINGS
from rrd_jax.data import returns



def episode_probabilities(episode_lengths, weighting="length", component_ids=None,
                          component_weights=None):
  """Probability of drawing each episode: proportional to its length T, or uniform; in a mixture,
  weight_c * (the same within component c), with weights normalised over the components present."""
  lengths = np.asarray(episode_lengths, np.float64)
  if weighting == "length":
    weights = lengths
  elif weighting == "uniform":
    weights = np.ones_like(lengths)
  else:
    raise ValueError(f"unknown episode weighting {weighting!r}; expected one of {EPISODE_WEIGHTINGS}")
  if component_weights is None:  # one dataset
    return weights / weights.sum()
  component_ids = np.asarray(component_ids, np.int64)
  component_weights = np.asarray(component_weights, np.float64)
  totals = np.bincount(component_ids, weights=weights, minlength=len(component_weights))
  present = totals > 0
  share = np.where(present, component_weights, 0.0)
  share = share / share.sum()
  return weights / totals[component_ids] * share[component_ids]


def sample_step_indices(rng, length, num_samples):
  """K step indices of an episode of length T: without replacement, or with replacement if K > T."""
  if num_samples > length:
    return np.sort(rng.integers(0, length, size=num_samples))
  return np.sort(rng.choice(length, size=num_samples, replace=False))


def sample_step_indices_in_jit(key, lengths, num_samples, max_length):
  """`sample_step_indices` for a batch of episodes, traceable (device caches, the online replay
  buffer): [B, K] sorted int32 indices for lengths [B]. K <= T: the K smallest of T i.i.d.
  uniform scores (K distinct positions, uniformly); K > T: K i.i.d. positions. `max_length` is a
  static bound on T."""
  key_distinct, key_repeated = jax.random.split(key)
  batch = lengths.shape[0]
  scores = jax.random.uniform(key_distinct, (batch, max_length))
  scores = jnp.where(jnp.arange(max_length)[None] < lengths[:, None], scores, 2.0)
  k = min(num_samples, max_length)
  _, distinct = jax.lax.top_k(-scores, k)  # [B, k]
  if k < num_samples:  # only used where K > T anyway
    distinct = jnp.pad(distinct, ((0, 0), (0, num_samples - k)))
  repeated = jax.random.randint(key_repeated, (batch, num_samples), 0, lengths[:, None])
  indices = jnp.where(num_samples > lengths[:, None], repeated, distinct)
  return jnp.sort(indices, axis=1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  episode_ids: np.ndarray  # [B] int64, positions in the dataset index
  sample_indices: np.ndarray  # [B, K] int32, step indices within each episode
  negative: np.ndarray = None  # [B] bool: conditioned on another task's instruction
  instruction_ids: np.ndarray = None  # [B] int32: the instruction conditioned on (with negatives)


@dataclasses.dataclass(frozen=True)
class SamplerOptions:
  """What an RRD batch is: how many episodes, how many steps each, how episodes are drawn, and
  the seed that makes the batch of step s a pure function of (seed, s). Used alike by the
  streaming sampler, the host cache and the in-jit device-cache sampler."""
  episodes_per_batch: int
  sample_size: int  # K
  seed: int = 0
  weighting: str = "length"  # EPISODE_WEIGHTINGS
  component_weights: tuple = None  # a mixture's component weights (None: one dataset)
  negatives_ratio: float = 0.0  # episodes conditioned on another task's instruction
  negative_return: float = 0.0  # ... and given this return

  @classmethod
  def from_config(cls, config, seed):
    mixture = config.data.mixture
    return cls(episodes_per_batch=int(config.rrd.episodes_per_batch),
               sample_size=int(config.rrd.sample_size), seed=int(seed),
               weighting=config.data.episode_weighting,
               component_weights=tuple(float(c.weight) for c in mixture.values()) or None,
               negatives_ratio=float(config.returns.negatives_ratio),
               negative_return=float(config.returns.negative_return))

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


class RRDSampler:
  """Draws `episodes_per_batch` episodes (i.i.d., with replacement) and K steps in each.

  component_ids: each episode's mixture component (weights in `options`; see
  episode_probabilities). instruction_ids: with options.negatives_ratio > 0, each sampled episode
  is, with this probability, conditioned on an instruction drawn uniformly from the other
  instructions among them.
  """

  def __init__(self, episode_lengths, options, *, component_ids=None, instruction_ids=None):
    self.options = options
    self.episode_lengths = np.asarray(episode_lengths, np.int64)
    self.probabilities = episode_probabilities(self.episode_lengths, options.weighting,
                                               component_ids, options.component_weights)
    self.episodes_per_batch = int(options.episodes_per_batch)
    self.sample_size = int(options.sample_size)
    self.seed = int(options.seed)
    self.negatives_ratio = float(options.negatives_ratio)
    if self.negatives_ratio > 0:
      self.instruction_ids = np.asarray(instruction_ids, np.int32)
      self.candidates = np.unique(self.instruction_ids)
      if len(self.candidates) < 2:
        raise ValueError("negatives need episodes with at least 2 different instructions")

  def plan(self, step):
    rng = np.random.default_rng([self.seed, int(step)])
    episode_ids = rng.choice(len(self.episode_lengths), size=self.episodes_per_batch,
                             p=self.probabilities)
    sample_indices = np.stack([
        sample_step_indices(rng, self.episode_lengths[e], self.sample_size) for e in episode_ids
    ]).astype(np.int32)
    plan = BatchPlan(episode_ids=episode_ids.astype(np.int64), sample_indices=sample_indices)
    if self.negatives_ratio > 0:  # drawn after the plan above, which stays as without negatives
      own = self.instruction_ids[episode_ids]
      negative = rng.random(len(episode_ids)) < self.negatives_ratio
      other = returns.mismatched_instructions(rng, own, self.candidates)
      plan = dataclasses.replace(plan, negative=negative,
                                 instruction_ids=np.where(negative, other, own).astype(np.int32))
    return plan
