"""Return definitions: what each episode's target return R (and its per-step "true" reward) is.

RRD fits per-step rewards whose sum matches R, so R must vary between episodes. LIBERO demos all
have return 1 (reward 1.0 on the last step), so the raw sum teaches nothing; config.returns offers:
  - kind "sum": R = sum of the dataset's reward field (per step: the reward);
  - kind "time_penalty": R = sum - c*T (per step: reward - c), i.e. success - c*T for LIBERO demos:
    among successful demos, faster ones are better;
  - success "all" (returns.success): every episode is a success with raw return 1, whatever its
    reward field holds, for demos without reward labels (reward 0 everywhere): with time_penalty,
    R = 1 - c*T, as for LIBERO's demos;
  - negatives (returns.negatives_ratio > 0): an episode's frames paired with another task's
    instruction get return `negative_return` (per step: negative_return / T); the model must be
    conditioned on the instruction (model.use_instruction) to tell them apart. Negatives are drawn
    by the sampler (rrd_jax/data/sampling.py); this module defines the positive targets.
In a mixture each component has its own return kind and time penalty.
"""

import dataclasses

import numpy as np

from rrd_jax.config.schema import RETURN_KINDS



CONSTANT_RETURN_REMEDY = (
    "use config.returns.kind=time_penalty (R = success - c*T) and/or "
    "config.returns.negatives_ratio>0 (instruction-relabelled negatives), or mix in failed "
    "rollouts with config.data.mixture")


def returns_are_constant(returns):
  """True when the returns cannot rank episodes: one distinct value, or a negligible spread."""
  returns = np.asarray(returns, np.float64)
  return (len(np.unique(returns)) == 1
          or returns.std() < 1e-6 * max(1.0, abs(float(returns.mean()))))


@dataclasses.dataclass(frozen=True)
class Targets:
  """Per-episode training targets, aligned with an EpisodeIndex."""
  returns: np.ndarray  # [N] float64: the defined return R
  reward_offsets: np.ndarray  # [N] float32: added to every step's dataset reward (-c or 0)
  success: np.ndarray  # [N] bool: the dataset's raw return is > 0


def reward_offset(kind, time_penalty):
  """The per-step offset of a return kind."""
  if kind == "sum":
    return 0.0
  if kind == "time_penalty":
    return -float(time_penalty)
  raise ValueError(f"unknown return kind {kind!r}; expected one of {RETURN_KINDS}")


def episode_targets(raw_returns, lengths, offsets, all_success=None):
  """Targets from raw returns (sums of the reward field), lengths and per-episode offsets.
  all_success: [N] bool, True for episodes of a component with returns.success="all": each
  counts as a success with raw return 1, whatever its reward field holds (demos with no reward
  labels)."""
  raw_returns = np.asarray(raw_returns, np.float64)
  offsets = np.asarray(offsets, np.float32)
  success = raw_returns > 0
  if all_success is not None:
    all_success = np.asarray(all_success, bool)
    raw_returns = np.where(all_success, 1.0, raw_returns)
    success = success | all_success
  returns = raw_returns + offsets.astype(np.float64) * np.asarray(lengths, np.float64)
  return Targets(returns=returns, reward_offsets=offsets, success=success)


def raw_targets(index):
  """Targets that are the dataset's own rewards (kind "sum" everywhere)."""
  return episode_targets(index.returns, index.lengths, np.zeros(len(index), np.float32))


def mismatched_instructions(rng, own_ids, candidate_ids):
  """For each own instruction id, a different id drawn uniformly from `candidate_ids`.

  candidate_ids: sorted unique instruction ids (at least 2). Returns [len(own_ids)] int32.
  """
  own_ids = np.asarray(own_ids)
  uniform = rng.random(len(own_ids))
  return mismatched_from_uniform(uniform, own_ids, np.asarray(candidate_ids), np).astype(np.int32)


def mismatched_from_uniform(uniform, own_ids, candidates, xp):
  """The draw of `mismatched_instructions` from uniforms in [0, 1), in numpy or jax.numpy (xp):
  position j among the candidates minus own (own's position is skipped)."""
  own_pos = xp.searchsorted(candidates, own_ids)
  own_in = candidates[xp.minimum(own_pos, candidates.shape[0] - 1)] == own_ids
  n_other = candidates.shape[0] - own_in.astype(xp.int32)
  draw = xp.floor(uniform * n_other).astype(xp.int32)
  draw = xp.where(own_in & (draw >= own_pos), draw + 1, draw)
  return candidates[draw]
