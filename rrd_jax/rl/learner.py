"""The learner: SAC plus (for the rrd kinds) the RRD reward model, as one pytree.

One training step (RRD_REFERENCE.md, "The full agent"):
  1. rrd kinds: one RRD update of the reward model on an RRD batch of stored episodes
     (rrd.episodes_per_batch episodes x rrd.sample_size steps; rrd_loss, config.rrd.loss_form);
  2. one SAC update on a transition batch whose rewards come from rewards.transition_rewards (for
     the rrd kinds r_hat(s, a, s') of the reward model as just updated).
`make_train_steps(n)` fuses n steps into one jitted lax.scan; every step draws its batches inside
jit from the device replay buffer with a key split off the state's rng, so n fused steps equal n
single steps.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import optax

from rrd_jax import losses, models
from rrd_jax import step as step_lib
from rrd_jax.rl import replay, rewards, sac


@flax.struct.dataclass
class LearnerState:
  sac: sac.SACState
  reward: step_lib.TrainState  # the RRD reward model (trained only by the rrd kinds)
  rng: jax.Array
  updates: jax.Array  # [] int32 training steps done


def reward_model(config):
  """RewardNet(kind="mlp"): the reference MLP on [s, a, s - s']."""
  return models.RewardNet(kind="mlp", hidden_sizes=tuple(config.rrd.hidden_sizes))


def create(config, hp, observation_size, key):
  key_sac, key_reward, key_rng = jax.random.split(key, 3)
  model = reward_model(config)
  example = {"state": jnp.zeros((1, observation_size)), "next_state": jnp.zeros((1, observation_size)),
             "action": jnp.zeros((1, hp.action_size))}
  reward = step_lib.TrainState.create(apply_fn=model.apply, params=model.init(key_reward, example),
                                      tx=optax.adam(config.rrd.learning_rate))
  return LearnerState(sac=sac.create(hp, observation_size, key_sac), reward=reward, rng=key_rng,
                      updates=jnp.zeros((), jnp.int32))


def rrd_update(reward_state, rrd_config, bias_correction, batch):
  """One RRD update on batch [B, K, ...] steps + [B] episode_return / episode_length."""
  inputs = rewards.model_inputs(batch)

  def loss_fn(params):
    pred = step_lib.predict_sampled(reward_state.apply_fn, params, inputs)  # [B, K]
    return losses.rrd_loss(pred, batch["episode_return"], batch["episode_length"],
                           form=rrd_config.loss_form, bias_correction=bias_correction), pred

  (loss, pred), grads = jax.value_and_grad(loss_fn, has_aux=True)(reward_state.params)
  metrics = {"rrd_loss": loss, "rrd_reward_mean": jnp.mean(pred)}
  return reward_state.apply_gradients(grads=grads), metrics


def train_step(state, buffer, *, config, hp):
  """One RRD (rrd kinds) + SAC update with batches drawn from `buffer`: (state, metrics)."""
  kind = config.reward.kind
  rng, key_batch, key_rrd, key_sac = jax.random.split(state.rng, 4)
  metrics = {}
  reward = state.reward
  if rewards.uses_reward_model(kind):
    rrd_batch = replay.sample_episodes(buffer, key_rrd, config.rrd.episodes_per_batch,
                                       config.rrd.sample_size, config.env.max_episode_steps)
    bias_correction = kind == "rrd_lrd" or config.rrd.bias_correction
    reward, metrics = rrd_update(reward, config.rrd, bias_correction, rrd_batch)
  batch = replay.sample_transitions(buffer, key_batch, config.sac.batch_size)
  reward_fn = functools.partial(reward.apply_fn, reward.params)
  batch["reward"] = rewards.transition_rewards(kind, batch, buffer.return_min, buffer.return_max,
                                               reward_fn)
  sac_state, sac_metrics = sac.update(state.sac, hp, batch, key_sac)
  metrics.update(sac_metrics, reward_mean=jnp.mean(batch["reward"]))
  return LearnerState(sac=sac_state, reward=reward, rng=rng, updates=state.updates + 1), metrics


def make_train_step(config, hp):
  """Jitted (state, buffer) -> (state, metrics): one step."""
  return jax.jit(functools.partial(train_step, config=config, hp=hp), donate_argnums=(0,))


def make_train_steps(config, hp, num_steps):
  """Jitted (state, buffer) -> (state, metrics averaged over the steps): num_steps fused steps."""
  step = functools.partial(train_step, config=config, hp=hp)

  def many(state, buffer):
    state, metrics = jax.lax.scan(lambda s, _: step(s, buffer), state, None, length=num_steps)
    return state, jax.tree.map(jnp.mean, metrics)

  return jax.jit(many, donate_argnums=(0,))
