"""RRD losses as pure functions of arrays (docs/ALGORITHM.md, "Losses").

For one episode with true return R, length T and predictions r_1..r_K at K sampled steps,
m = mean_k r_k:
  L-Rand-RD, "mean" form (reference default):  (m - R/T)^2
  L-Rand-RD, "return" form (seed tool):        (T*m - R)^2 = T^2 * mean form
  L-RD via bias correction: subtract s^2/K * (1 - K/T) from the mean form, with s^2 the unbiased
  (ddof=1) sample variance of r_1..r_K; the factor (1 - K/T) is 1 when the K steps were drawn with
  replacement (K > T) and the correction is 0 when T == 1. The "return" form scales the
  correction by T^2 as well, so both forms estimate the same L-RD up to the factor T^2.
Episode losses are averaged over the batch (optionally weighted, e.g. to mask padding).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from rrd_jax.config.schema import LOSS_FORMS


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossOptions:
  """Which RRD loss a train step minimises (config.rrd.loss_form / bias_correction)."""
  form: str  # LOSS_FORMS
  bias_correction: bool  # L-RD (bias-corrected) instead of L-Rand-RD

  @classmethod
  def from_config(cls, rrd):
    """From a reward-model config's rrd section (configs/libero_rrd.py)."""
    return cls(form=rrd.loss_form, bias_correction=bool(rrd.bias_correction))



def rrd_episode_losses(pred_rewards, episode_returns, episode_lengths, *, form="mean",
                       bias_correction=False):
  """Per-episode RRD losses.

  Args:
    pred_rewards: [B, K] predicted rewards at the sampled steps.
    episode_returns: [B] true episode returns R.
    episode_lengths: [B] episode lengths T (>= 1).
    form: "mean" (reference) or "return" (seed tool's T^2-weighted form).
    bias_correction: estimate L-RD instead of L-Rand-RD (requires K > 1). A Python bool, or a
      traced [] bool (e.g. per member of a vmapped population).
  Returns:
    [B] losses.
  """
  if form not in LOSS_FORMS:
    raise ValueError(f"unknown loss form {form!r}; expected one of {LOSS_FORMS}")
  pred_rewards = jnp.asarray(pred_rewards, jnp.float32)
  num_samples = pred_rewards.shape[-1]  # K
  lengths = jnp.asarray(episode_lengths, jnp.float32)
  returns = jnp.asarray(episode_returns, jnp.float32)
  mean_pred = jnp.mean(pred_rewards, axis=-1)  # [B]
  losses = jnp.square(mean_pred - returns / lengths)
  static = isinstance(bias_correction, (bool, np.bool_))
  if not static or bias_correction:
    if num_samples < 2:
      raise ValueError("bias correction needs at least 2 sampled steps per episode (K >= 2)")
    sample_var = jnp.var(pred_rewards, axis=-1, ddof=1)  # [B]
    finite_population = jnp.where(num_samples > lengths, 1.0, 1.0 - num_samples / lengths)
    correction = sample_var / num_samples * finite_population
    applies = lengths > 1 if static else jnp.logical_and(bias_correction, lengths > 1)
    losses = losses - jnp.where(applies, correction, 0.0)
  if form == "return":
    losses = losses * jnp.square(lengths)
  return losses


def rrd_loss(pred_rewards, episode_returns, episode_lengths, *, form="mean",
             bias_correction=False, episode_weights=None):
  """Batch RRD loss: the (weighted) mean of `rrd_episode_losses`."""
  losses = rrd_episode_losses(pred_rewards, episode_returns, episode_lengths, form=form,
                              bias_correction=bias_correction)
  if episode_weights is None:
    return jnp.mean(losses)
  weights = jnp.asarray(episode_weights, jnp.float32)
  weighted = jnp.where(weights > 0, losses * weights, 0.0)  # padding rows (any T) contribute 0
  return jnp.sum(weighted) / jnp.maximum(jnp.sum(weights), 1e-12)
