"""TrainState and the jitted train / eval / predict steps."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from rrd_jax.config.inputs import ModelInputs
from rrd_jax.model import losses, networks
from rrd_jax.run import parallel
from rrd_jax.util.errors import UserError


class TrainState(train_state.TrainState):
  """params, opt_state and step (flax); apply_fn and tx are static."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimOptions:
  """The optimiser's settings (config.optim, whose file defines every default)."""
  learning_rate: float
  grad_clip_norm: float
  weight_decay: float
  schedule: str  # "constant" or "cosine"
  warmup_steps: int

  @classmethod
  def from_config(cls, optim):
    """From a reward-model config's optim section (configs/libero_rrd.py)."""
    return cls(learning_rate=float(optim.learning_rate), grad_clip_norm=float(optim.grad_clip_norm),
               weight_decay=float(optim.weight_decay), schedule=optim.schedule,
               warmup_steps=int(optim.warmup_steps))


def learning_rate(options, num_steps=None):
  """options.learning_rate as a number ("constant") or an optax schedule over num_steps updates:
  "cosine" warms up linearly for options.warmup_steps, then decays to 0 at num_steps."""
  if options.schedule == "constant":
    return options.learning_rate
  if options.schedule == "cosine":
    warmup = options.warmup_steps
    return optax.warmup_cosine_decay_schedule(0.0 if warmup else options.learning_rate,
                                              options.learning_rate, warmup,
                                              max(int(num_steps), warmup + 1), end_value=0.0)
  raise ValueError(f"unknown optim.schedule {options.schedule!r}")


def make_optimizer(options, num_steps=None, frozen=None):
  """Adam (AdamW when options.weight_decay > 0) with optional clipping and schedule, from an
  OptimOptions. frozen: a function of the params tree giving True for leaves no update may touch
  (e.g. input statistics)."""
  chain = []
  if options.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(options.grad_clip_norm))
  rate = learning_rate(options, num_steps)
  decay = options.weight_decay  # AdamW when > 0 (plain Adam keeps its state tree)
  chain.append(optax.adamw(rate, weight_decay=decay) if decay > 0 else optax.adam(rate))
  tx = optax.chain(*chain)
  if frozen is None:
    return tx
  labels = lambda params: jax.tree.map(lambda f: "frozen" if f else "trained", frozen(params))
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def _input_stats_leaves(params):
  """True for the leaves of the input-statistics collection (frozen), False elsewhere."""
  return {name: jax.tree.map(lambda _: name == networks.INPUT_STATS, tree)
          for name, tree in params.items()}


def create_train_state(config, num_instructions, state_size, action_size, *, rng=None,
                       sharding=None, input_stats=None):
  """A reward model's TrainState for config.model / config.optim, initialised inside jit from the
  inputs' shapes alone (jax.eval_shape, then jit with out_shardings: no data batch needed) and
  placed by `sharding` (default: this process's first device). rng: default PRNGKey(config.seed).
  input_stats: {state,action,delta}_{mean,std} arrays for a model with model.normalize_inputs
  (default: mean 0, std 1 until a checkpoint restores the saved ones)."""
  outside = [d for d in config.model.state_dims if d >= state_size]
  if outside:
    raise UserError(f"model.state_dims {tuple(outside)} are outside the dataset's {state_size}-d "
                    f"observation state (dimensions 0 to {state_size - 1})")
  model = networks.build_model(config.model, num_instructions=num_instructions)
  specs = ModelInputs.from_config(config).specs(state_size, action_size)
  normalize = config.model.normalize_inputs
  tx = make_optimizer(OptimOptions.from_config(config.optim), config.train.num_steps,
                      frozen=_input_stats_leaves if normalize else None)
  stats = None
  if normalize and input_stats is not None:
    stats = {k: jnp.asarray(v, jnp.float32) for k, v in input_stats.items()}

  def init(key, stats):
    example = {k: jnp.zeros(s.shape, s.dtype) for k, s in specs.items()}
    variables = model.init(key, example)
    if stats is not None:
      variables = {**variables, networks.INPUT_STATS: stats}
    return TrainState.create(apply_fn=model.apply, params=variables, tx=tx)

  init = functools.partial(init, stats=stats)

  rng = jax.random.PRNGKey(config.seed) if rng is None else rng
  abstract = jax.eval_shape(init, rng)
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.jit(init, out_shardings=jax.tree.map(lambda _: sharding, abstract))(rng)


def predict_sampled(apply_fn, params, inputs):
  """Per-step rewards for inputs [B, K, ...]: the model vmapped over the B subsequences -> [B, K]."""
  return jax.vmap(lambda episode_inputs: apply_fn(params, episode_inputs))(inputs)


def _loss_and_metrics(apply_fn, params, batch, input_keys, loss_options, bias_correction=None):
  inputs = {k: batch[k] for k in input_keys}
  pred = predict_sampled(apply_fn, params, inputs)  # [B, K]
  if "true_reward" in batch:  # offline batches carry it (metrics); the online learner's do not
    chex.assert_equal_shape([pred, batch["true_reward"]])
  if bias_correction is None:
    bias_correction = loss_options.bias_correction
  loss = losses.rrd_loss(pred, batch["episode_return"], batch["episode_length"],
                         form=loss_options.form, bias_correction=bias_correction)
  lengths = batch["episode_length"].astype(jnp.float32)
  predicted_return = jnp.mean(pred, axis=-1) * lengths  # T * m: the RRD return estimate
  metrics = {
      "loss": loss,
      "return_mse": jnp.mean(jnp.square(predicted_return - batch["episode_return"])),
      "reward_mean": jnp.mean(pred),
      "reward_std": jnp.std(pred),
  }
  return loss, metrics


def train_update(state, batch, input_keys, loss_options, bias_correction=None, augmentation=None):
  """One Adam step on an RRD batch (unjitted; the jitted steps below and the online learner wrap
  it). loss_options: a losses.LossOptions; `bias_correction` overrides its bias_correction (a bool
  or a traced [] bool).
  augmentation: an augment.Augmentation applied to the batch's frames for step state.step."""
  if augmentation is not None:
    batch = augmentation(batch, state.step)
  grad_fn = jax.grad(functools.partial(_loss_and_metrics, state.apply_fn, input_keys=input_keys,
                                       loss_options=loss_options, bias_correction=bias_correction),
                     argnums=0, has_aux=True)
  grads, metrics = grad_fn(state.params, batch)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return state.apply_gradients(grads=grads), metrics


def make_cached_train_fn(input_keys, loss_options, mesh, cache, augmentation=None):
  """(state, table, probabilities, first_step, num_steps) -> (state, mean metrics): num_steps
  updates in one call (lax.scan), each on the batch `cache.sample` draws inside jit for its step
  from the device-resident frame table (rrd_jax/data/cache.py DeviceCache)."""
  batch_sharding = parallel.batch_sharding(mesh)

  def run(state, table, probabilities, first_step, num_steps):
    def body(state, step):
      batch = jax.lax.with_sharding_constraint(cache.sample(table, probabilities, step),
                                               batch_sharding)
      return train_update(state, batch, input_keys, loss_options, augmentation=augmentation)

    state, metrics = jax.lax.scan(body, state, first_step + jnp.arange(num_steps))
    return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

  return jax.jit(run, static_argnums=(4,), donate_argnums=(0,),
                 out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)))


def make_train_step(input_keys, loss_options, mesh, augmentation=None):
  """(state, batch) -> (state, metrics); batch leaves are [B, K, ...] sharded over `data`."""

  train_step = functools.partial(train_update, input_keys=input_keys, loss_options=loss_options,
                                 augmentation=augmentation)
  return jax.jit(train_step, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
                 donate_argnums=(0,))


def make_eval_step(input_keys, loss_options, mesh):
  """(params, batch) -> metrics on an RRD batch, without updating."""

  def eval_step(params, batch, apply_fn):
    return _loss_and_metrics(apply_fn, params, batch, input_keys, loss_options)[1]

  def run(state, batch):
    return jitted(state.params, batch, state.apply_fn)

  jitted = jax.jit(eval_step, static_argnums=(2,),
                   in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                   out_shardings=parallel.replicated(mesh))
  return run


def make_predict_fn(apply_fn, input_keys, mesh):
  """(params, flat batch [N, ...]) -> [N] rewards, jitted, N sharded over `data`."""

  def predict(params, batch):
    return apply_fn(params, {k: batch[k] for k in input_keys})

  return jax.jit(predict, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))
