"""The reward SAC learns from, per config.reward.kind (docs/ALGORITHM.md, "The full agent
(RRD-SAC)").

All read a batch of transitions of finished episodes (replay.sample_transitions):
  rrd, rrd_lrd  r_hat(s, a, s') of the current RRD reward model (trained with L-Rand-RD, or L-RD
                via bias correction for rrd_lrd)
  ircr          the episode's return normalised to [0, 1] by the min / max return over the whole
                episodes in the replay ring plus IRCR's heap of top episodes (learner.py,
                replay.py)
  uniform       R / T on every step of the episode
  episodic      the raw delayed reward (0 ... 0, R): no redistribution
  dense         the true per-step reward (the oracle ceiling)
"""

import jax
import jax.numpy as jnp

from rrd_jax.config.inputs import ModelInputs
from rrd_jax.config.schema import MODEL_REWARD_KINDS, REWARD_KINDS



def uses_reward_model(kind):
  return kind in MODEL_REWARD_KINDS


MODEL_INPUTS = ModelInputs.low_dim()  # RewardNet(kind="mlp")'s inputs: [s, a, s - s']


def model_inputs(batch):
  """RewardNet(kind="mlp") inputs of a transition batch."""
  return {"state": batch["observation"], "next_state": batch["next_observation"],
          "action": batch["action"]}


def transition_rewards(kind, batch, return_min, return_max, reward_fn=None):
  """[B] rewards for the transitions in `batch`; reward_fn(model inputs) -> [B] for rrd kinds."""
  if kind in MODEL_REWARD_KINDS:
    return jax.lax.stop_gradient(reward_fn(model_inputs(batch)))
  if kind == "ircr":
    spread = jnp.maximum(return_max - return_min, 1e-8)
    return (batch["episode_return"] - return_min) / spread
  if kind == "uniform":
    return batch["episode_return"] / batch["episode_length"].astype(jnp.float32)
  if kind == "episodic":
    return batch["reward"]
  if kind == "dense":
    return batch["dense_reward"]
  raise ValueError(f"unknown reward kind {kind!r}; expected one of {REWARD_KINDS}")
