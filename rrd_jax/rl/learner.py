"""The learner: SAC plus (for the rrd kinds) the RRD reward model, as one pytree.

One training step (docs/ALGORITHM.md, "The full agent (RRD-SAC)"):
  1. rrd kinds: one RRD update of the reward model on an RRD batch of stored episodes
     (rrd.episodes_per_batch episodes x rrd.sample_size steps; rrd_loss, config.rrd.loss_form);
  2. one SAC update on a transition batch whose rewards come from rewards.transition_rewards (for
     the rrd kinds r_hat(s, a, s') of the reward model as just updated).
`make_train_steps(n)` fuses n steps into one jitted lax.scan; every step draws its batches inside
jit from the device replay buffer with a key split off the state's rng, so n fused steps equal n
single steps. Both run a population: states, buffers and kind ids carry a leading member axis
(a single run is a population of one) and the step is vmapped over it, so members (seeds, reward
kinds) train side by side in one call.

IRCR members use the original IRCR's own SAC settings (config.ircr, `kind_settings`): their batch
size, polyak, replay capacity and (optionally) a fixed temperature, and half of each batch drawn
from the heap of top episodes. Members of other kinds keep config.sac / config.replay. A
population whose members' batch sizes differ draws the largest batch for everyone and weighs
each member's rows past its own size 0 (JAX's random draws are prefix-stable, so the first rows
are the ones it would draw alone).
"""

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp

from rrd_jax.model import networks
from rrd_jax.model.losses import LossOptions
from rrd_jax.rl import replay, rewards, sac
from rrd_jax.train import step as step_lib


@flax.struct.dataclass
class LearnerState:
  sac: sac.SACState
  reward: step_lib.TrainState  # the RRD reward model (trained only by the rrd kinds)
  rng: jax.Array
  updates: jax.Array  # [] int32 training steps done


@dataclasses.dataclass(frozen=True)
class KindSettings:
  """The SAC settings of one reward kind's members."""
  batch_size: int
  polyak: float
  fixed_alpha: float  # > 0: the temperature is fixed at this value; 0: tuned
  replay_capacity: int
  heap: bool  # half of each batch from the heap of top episodes (IRCR)


def kind_settings(config, kind):
  if kind == "ircr":
    c = config.ircr
    return KindSettings(c.batch_size, c.polyak, c.fixed_alpha, c.replay_capacity, True)
  return KindSettings(config.sac.batch_size, config.sac.polyak, 0.0, config.replay.capacity, False)


def _per_member(values, kind_id, default=None):
  """None when every kind has `default`, else this member's value (traced) of `values`."""
  if all(v == default for v in values):
    return None
  return jnp.asarray(values, jnp.float32)[kind_id]


def _sac_batch(buffer, key, kind_id, settings):
  """The member's transition batch [max batch size] and IRCR's (min, max) return range: IRCR's
  second half from the heap (while it holds anything), every other row uniform over the ring."""
  size = max(s.batch_size for s in settings)
  batch = replay.sample_transitions(buffer, key, size)
  if not any(s.heap for s in settings):
    return batch, (buffer.return_min, buffer.return_max)
  heap = replay.sample_heap(buffer, jax.random.fold_in(key, 1), size)
  half = jnp.asarray([s.batch_size // 2 if s.heap else size for s in settings])[kind_id]
  from_heap = (jnp.arange(size) >= half) & (replay.heap_stored(buffer) > 0)
  pick = lambda h, f: jnp.where(from_heap.reshape((-1,) + (1,) * (f.ndim - 1)), h, f)  # noqa: E731
  return jax.tree.map(pick, heap, batch), replay.heap_return_range(buffer)


def reward_model(config):
  """RewardNet(kind="mlp"): the reference MLP on [s, a, s - s']."""
  return networks.RewardNet(kind="mlp", hidden_sizes=tuple(config.rrd.hidden_sizes))


def optim_options(optim):
  """The agent's reward-model optimiser (configs/mujoco_rrd_sac.py's optim: no schedule)."""
  return step_lib.OptimOptions(learning_rate=float(optim.learning_rate),
                               grad_clip_norm=float(optim.grad_clip_norm),
                               weight_decay=float(optim.weight_decay), schedule="constant",
                               warmup_steps=0)


def create(config, hp, observation_size, key):
  key_sac, key_reward, key_rng = jax.random.split(key, 3)
  model = reward_model(config)
  example = {k: jnp.zeros(s.shape, s.dtype)
             for k, s in rewards.MODEL_INPUTS.specs(observation_size, hp.action_size).items()}
  reward = step_lib.TrainState.create(apply_fn=model.apply, params=model.init(key_reward, example),
                                      tx=step_lib.make_optimizer(optim_options(config.optim)))
  return LearnerState(sac=sac.create(hp, observation_size, key_sac), reward=reward, rng=key_rng,
                      updates=jnp.zeros((), jnp.int32))


def bias_correction(kind):
  """Whether `kind`'s reward model is trained with L-RD (bias correction) instead of L-Rand-RD."""
  return kind == "rrd_lrd"


def rrd_update(reward_state, loss_form, corrected, batch):
  """One RRD update (step.train_update, the offline path's) on replay.sample_episodes' batch:
  [B, K, ...] steps + [B] episode_return / episode_length. `corrected`: bias correction (L-RD), a
  Python bool or a traced [] bool (a population mixing rrd and rrd_lrd members); loss_form:
  config.rrd.loss_form.
  Metrics are the offline step's, prefixed rrd_ (rrd_loss, rrd_reward_mean, ...)."""
  inputs = dict(rewards.model_inputs(batch), episode_return=batch["episode_return"],
                episode_length=batch["episode_length"])
  reward_state, metrics = step_lib.train_update(reward_state, inputs, rewards.MODEL_INPUTS.keys,
                                                LossOptions(form=loss_form,
                                                            bias_correction=False),
                                                bias_correction=corrected)
  return reward_state, {f"rrd_{name}": value for name, value in metrics.items()}


def train_step(state, buffer, kind_id, *, config, hp, kinds):
  """One RRD + SAC update with batches drawn from `buffer`: (state, metrics).

  `kinds` (static) are the reward kinds of the population and kind_id ([] int32, traced) this
  member's index into them. The reward model is updated when any of `kinds` uses it (under vmap a
  member whose kind does not use it still trains one; SAC never reads it). With several kinds
  every kind's rewards are computed and the member's are used."""
  rng, key_batch, key_rrd, key_sac = jax.random.split(state.rng, 4)
  metrics = {}
  reward = state.reward
  model_kinds = [k for k in kinds if rewards.uses_reward_model(k)]
  if model_kinds:
    rrd_batch = replay.sample_episodes(buffer, key_rrd, config.rrd.episodes_per_batch,
                                       config.rrd.sample_size, config.env.max_episode_steps)
    flags = {bias_correction(k) for k in model_kinds}
    corrected = flags.pop() if len(flags) == 1 else jnp.asarray(
        [bias_correction(k) for k in kinds])[kind_id]
    reward, metrics = rrd_update(reward, config.rrd.loss_form, corrected, rrd_batch)
  settings = [kind_settings(config, k) for k in kinds]
  batch, (return_min, return_max) = _sac_batch(buffer, key_batch, kind_id, settings)
  reward_fn = functools.partial(reward.apply_fn, reward.params)
  candidates = [rewards.transition_rewards(k, batch, return_min, return_max, reward_fn)
                for k in kinds]
  batch["reward"] = candidates[0] if len(kinds) == 1 else jnp.stack(candidates)[kind_id]
  sizes = [s.batch_size for s in settings]
  weights = None
  if len(set(sizes)) > 1:
    own = jnp.asarray(sizes, jnp.float32)[kind_id]
    weights = (jnp.arange(max(sizes)) < own).astype(jnp.float32) / own
  fixed = [s.fixed_alpha > 0 for s in settings]
  sac_state, sac_metrics = sac.update(
      state.sac, hp, batch, key_sac, weights=weights,
      polyak=_per_member([s.polyak for s in settings], kind_id, hp.polyak),
      learn_alpha=_per_member([0.0 if f else 1.0 for f in fixed], kind_id, 1.0))
  metrics.update(sac_metrics, reward_mean=jnp.mean(batch["reward"]))
  return LearnerState(sac=sac_state, reward=reward, rng=rng, updates=state.updates + 1), metrics


def make_train_step(config, hp, kinds):
  """Jitted (states, buffers, kind_ids) -> (states, metrics [M]): one step of every member."""
  step = jax.vmap(functools.partial(train_step, config=config, hp=hp, kinds=tuple(kinds)))
  return jax.jit(step, donate_argnums=(0,))


def train_steps(config, hp, kinds, num_steps):
  """(states, buffers, kind_ids) -> (states, metrics [M] averaged over the steps): num_steps
  fused steps of every member in one lax.scan (not jitted: to trace inside a larger function)."""
  step = jax.vmap(functools.partial(train_step, config=config, hp=hp, kinds=tuple(kinds)))

  def many(states, buffers, kind_ids):
    states, metrics = jax.lax.scan(lambda s, _: step(s, buffers, kind_ids), states, None,
                                   length=num_steps)
    return states, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

  return many


def make_train_steps(config, hp, kinds, num_steps):
  """`train_steps`, jitted (the states donated)."""
  return jax.jit(train_steps(config, hp, kinds, num_steps), donate_argnums=(0,))


def create_members(config, hp, observation_size, seeds, kinds=None):
  """Learner states of a population, one per seed, stacked on a leading member axis; `kinds`
  (one per member) sets a fixed temperature where the kind's settings ask for one."""
  keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 0) for s in seeds])
  states = jax.vmap(lambda key: create(config, hp, observation_size, key))(keys)
  fixed = [kind_settings(config, k).fixed_alpha for k in kinds or ()]
  if not any(fixed):
    return states
  temperature = states.sac.temperature
  log_alpha = jnp.where(jnp.asarray(fixed) > 0, jnp.log(jnp.maximum(jnp.asarray(fixed), 1e-30)),
                        temperature.params["log_alpha"])
  return states.replace(sac=states.sac.replace(
      temperature=temperature.replace(params={"log_alpha": log_alpha.astype(jnp.float32)})))
