"""Soft Actor-Critic (docs/ALGORITHM.md, "The full agent (RRD-SAC)"): networks, agent state, update math.

- Critics: `num_critics` Q networks (MLP on [s, a]) as one flax module vmapped over stacked
  params (nn.vmap): Q(s, a) -> [C, B].
- Actor: tanh-Gaussian; an MLP gives the mean and log-std of u, log-std clipped to
  [log_std_min, log_std_max]; a = tanh(u) in [-1, 1]^A (envs.py rescales to the env's bounds).
- One update, on a batch (s, a, r, s', terminal):
    target  y = r + gamma (1 - terminal) (min_i Qtarget_i(s', a') - alpha log pi(a'|s')), a' ~ pi(s')
    critic  sum_i mean_B (Q_i(s, a) - y)^2
    actor   mean_B (alpha log pi(a|s) - min_i Q_i(s, a)), a ~ pi(s), with the updated critics
    alpha   -mean_B log_alpha (log pi(a|s) + target_entropy)   (log pi held fixed)
    targets polyak * target + (1 - polyak) * critic
  alpha = exp(log_alpha) as it was at the start of the update, for all three losses.
  With `weights` (a population whose members use different batch sizes: rows past a member's own
  size weigh 0) every mean_B is the weighted sum; `polyak` and `learn_alpha` may be traced
  per-member values (IRCR's own settings) instead of hp's.
"""

import dataclasses
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rrd_jax.train.step import TrainState


@dataclasses.dataclass(frozen=True)
class SACParams:
  """The static hyperparameters (config.sac, resolved for one environment)."""
  action_size: int
  hidden_sizes: Sequence[int] = (256, 256)
  num_critics: int = 2
  gamma: float = 0.99
  polyak: float = 0.995
  actor_lr: float = 3e-4
  critic_lr: float = 3e-4
  alpha_lr: float = 3e-4
  init_alpha: float = 1.0
  target_entropy: float = -1.0  # resolved: per-dimension value x action_size
  log_std_min: float = -20.0
  log_std_max: float = 2.0

  @classmethod
  def from_config(cls, sac_config, action_size):
    return cls(action_size=action_size, hidden_sizes=tuple(sac_config.hidden_sizes),
               num_critics=sac_config.num_critics, gamma=sac_config.gamma,
               polyak=sac_config.polyak, actor_lr=sac_config.actor_lr,
               critic_lr=sac_config.critic_lr, alpha_lr=sac_config.alpha_lr,
               init_alpha=sac_config.init_alpha,
               target_entropy=sac_config.target_entropy_per_dim * action_size,
               log_std_min=sac_config.log_std_min, log_std_max=sac_config.log_std_max)


class MLP(nn.Module):
  hidden_sizes: Sequence[int]
  output_size: int

  @nn.compact
  def __call__(self, x):
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.output_size)(x)


class Critic(nn.Module):
  hidden_sizes: Sequence[int]

  @nn.compact
  def __call__(self, observation, action):
    return MLP(self.hidden_sizes, 1)(jnp.concatenate([observation, action], -1))[..., 0]


class Critics(nn.Module):
  """num_critics Critics with stacked params: (s [B, O], a [B, A]) -> Q [C, B]."""
  hidden_sizes: Sequence[int]
  num_critics: int = 2

  @nn.compact
  def __call__(self, observation, action):
    ensemble = nn.vmap(Critic, variable_axes={"params": 0}, split_rngs={"params": True},
                       in_axes=None, out_axes=0, axis_size=self.num_critics)
    return ensemble(self.hidden_sizes, name="ensemble")(observation, action)


class Actor(nn.Module):
  """s [B, O] -> (mean [B, A], log_std [B, A]) of the pre-tanh Gaussian."""
  hidden_sizes: Sequence[int]
  action_size: int
  log_std_min: float = -20.0
  log_std_max: float = 2.0

  @nn.compact
  def __call__(self, observation):
    out = MLP(self.hidden_sizes, 2 * self.action_size)(observation)
    mean, log_std = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def tanh_gaussian_sample(mean, log_std, key):
  """a = tanh(mean + std * eps) and log pi(a) with the tanh change of variables: [B, A], [B]."""
  noise = jax.random.normal(key, mean.shape)
  pre_tanh = mean + jnp.exp(log_std) * noise
  gaussian_log_prob = -0.5 * jnp.square(noise) - log_std - 0.5 * jnp.log(2 * jnp.pi)
  # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|.
  log_det = 2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
  return jnp.tanh(pre_tanh), jnp.sum(gaussian_log_prob - log_det, axis=-1)


@flax.struct.dataclass
class SACState:
  actor: TrainState
  critic: TrainState
  target_critic_params: Any
  temperature: TrainState  # params: {"log_alpha": []}

  @property
  def alpha(self):
    return jnp.exp(self.temperature.params["log_alpha"])


def create(hp, observation_size, key):
  actor = Actor(hp.hidden_sizes, hp.action_size, hp.log_std_min, hp.log_std_max)
  critic = Critics(hp.hidden_sizes, hp.num_critics)
  key_actor, key_critic = jax.random.split(key)
  observation = jnp.zeros((1, observation_size), jnp.float32)
  action = jnp.zeros((1, hp.action_size), jnp.float32)
  critic_params = critic.init(key_critic, observation, action)
  return SACState(
      actor=TrainState.create(apply_fn=actor.apply, params=actor.init(key_actor, observation),
                              tx=optax.adam(hp.actor_lr)),
      critic=TrainState.create(apply_fn=critic.apply, params=critic_params,
                               tx=optax.adam(hp.critic_lr)),
      target_critic_params=jax.tree.map(jnp.copy, critic_params),  # own buffers (donation)
      temperature=TrainState.create(
          apply_fn=None, params={"log_alpha": jnp.asarray(jnp.log(hp.init_alpha), jnp.float32)},
          tx=optax.adam(hp.alpha_lr)))


def act(actor_state_or_params, apply_fn, observation, key, deterministic=False):
  """Actions [B, A] in [-1, 1] for observations [B, O]."""
  mean, log_std = apply_fn(actor_state_or_params, observation)
  if deterministic:
    return jnp.tanh(mean)
  return tanh_gaussian_sample(mean, log_std, key)[0]


def critic_target(state, hp, batch, key):
  """y = r + gamma (1 - terminal) (min_i Qtarget_i(s', a') - alpha log pi(a'|s')): [B]."""
  mean, log_std = state.actor.apply_fn(state.actor.params, batch["next_observation"])
  next_action, next_log_prob = tanh_gaussian_sample(mean, log_std, key)
  next_q = state.critic.apply_fn(state.target_critic_params, batch["next_observation"],
                                 next_action)
  soft_value = jnp.min(next_q, axis=0) - state.alpha * next_log_prob
  return batch["reward"] + hp.gamma * (1.0 - batch["terminal"]) * soft_value


def _batch_mean(weights):
  """mean over the batch (last) axis, or the weighted sum with `weights` [B]."""
  if weights is None:
    return lambda x, axis=-1: jnp.mean(x, axis=axis)
  return lambda x, axis=-1: jnp.sum(x * weights, axis=axis)


def update(state, hp, batch, key, weights=None, polyak=None, learn_alpha=None):
  """One SAC update on batch {observation, action, reward, next_observation, terminal}; weights,
  polyak, learn_alpha: per-member overrides (module docstring)."""
  key_target, key_actor = jax.random.split(key)
  alpha = state.alpha
  batch_mean = _batch_mean(weights)
  target = jax.lax.stop_gradient(critic_target(state, hp, batch, key_target))

  def critic_loss_fn(params):
    q = state.critic.apply_fn(params, batch["observation"], batch["action"])  # [C, B]
    return jnp.sum(batch_mean(jnp.square(q - target[None]), axis=1)), q

  (critic_loss, q), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
      state.critic.params)
  critic = state.critic.apply_gradients(grads=critic_grads)

  def actor_loss_fn(params):
    mean, log_std = state.actor.apply_fn(params, batch["observation"])
    action, log_prob = tanh_gaussian_sample(mean, log_std, key_actor)
    q_new = jnp.min(critic.apply_fn(critic.params, batch["observation"], action), axis=0)
    return batch_mean(alpha * log_prob - q_new), log_prob

  (actor_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
      state.actor.params)
  actor = state.actor.apply_gradients(grads=actor_grads)

  entropy_gap = jax.lax.stop_gradient(log_prob + hp.target_entropy)

  def alpha_loss_fn(params):
    return -batch_mean(params["log_alpha"] * entropy_gap)

  alpha_loss, alpha_grads = jax.value_and_grad(alpha_loss_fn)(state.temperature.params)
  if learn_alpha is not None:  # a fixed temperature: no gradient, so Adam leaves it unchanged
    alpha_grads = jax.tree.map(lambda g: g * learn_alpha, alpha_grads)
  temperature = state.temperature.apply_gradients(grads=alpha_grads)
  target_critic_params = optax.incremental_update(
      critic.params, state.target_critic_params,
      step_size=1.0 - (hp.polyak if polyak is None else polyak))
  q_mean = jnp.mean(q) if weights is None else jnp.mean(batch_mean(q))
  metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "alpha_loss": alpha_loss,
             "alpha": alpha, "q_mean": q_mean, "entropy": -batch_mean(log_prob)}
  return SACState(actor=actor, critic=critic, target_critic_params=target_critic_params,
                  temperature=temperature), metrics
