"""The MJX backend (config env.backend = "mjx", agent_state.py): everything on the device.

Each member runs env.num_envs MJX environments (mjx_envs.py); the population's M x E envs form
one batch. One call of the loop is one jitted function: a lax.scan over
train.env_steps_per_call / env.num_envs env steps, each of which
  1. acts: the member's stochastic policy (uniform random actions before train.warmup_steps),
     vmapped over members, keys fold_in(member's act key, env step) as on the host backend;
  2. steps every env (frame_skip MJX steps each; finished envs restart in the same step);
  3. stores: the transition goes into its env's running episode ([N, L] rows on the device); when
     any episode ends, the finished ones are appended to their member's replay ring
     (replay.insert with only their rows valid) and offered to IRCR's heap (replay.heap_offer),
     so the ring still holds whole finished episodes only;
then, past the warm-up, the fused training steps (learner.train_steps) in the same function.
No array crosses to the host inside a call; the host reads metrics at log time only.
Evaluation runs eval.episodes episodes per member on the device, in one lax.scan.
"""

import time

import jax
import jax.numpy as jnp

from rrd_jax.rl import agent_state, mjx_envs, replay
from rrd_jax.rl import learner as learner_lib

_PENDING = ("observation", "action", "next_observation", "reward", "dense_reward", "terminal")


def _pending(num_envs, max_steps, observation_size, action_size):
  """Every env's running episode: {field: rows [N, L, ...]} (L = env.max_episode_steps)."""
  shapes = {"observation": (observation_size,), "action": (action_size,),
            "next_observation": (observation_size,), "reward": (), "dense_reward": (),
            "terminal": ()}
  return {k: jnp.zeros((num_envs, max_steps) + shapes[k], jnp.float32) for k in _PENDING}


def _record(pending, transition):
  """Writes each env's transition at its step of the running episode."""
  env = jnp.arange(transition["done"].shape[0])
  step = transition["step_in_episode"]
  return {k: v.at[env, step].set(transition[k]) for k, v in pending.items()}


def _finish(buffers, pending, transition, members, ircr):
  """Appends the episodes that ended in `transition` to their members' rings (in env order) and,
  for the members flagged in `ircr` ([M] bool; None = no IRCR member), offers them to the heap."""
  done, num_envs = transition["done"], transition["done"].shape[0]
  per_member = num_envs // members
  steps = pending["reward"].shape[1]
  length = transition["step_in_episode"] + 1
  t = jnp.broadcast_to(jnp.arange(steps, dtype=jnp.int32), (num_envs, steps))
  rows = dict(pending, step_in_episode=t,
              episode_length=jnp.broadcast_to(length[:, None], t.shape),
              episode_return=jnp.broadcast_to(transition["episode_return"][:, None], t.shape),
              valid=done[:, None] & (t < length[:, None]))
  by_member = jax.tree.map(lambda x: x.reshape((members, per_member * steps) + x.shape[2:]), rows)
  buffers = jax.vmap(replay.insert)(buffers, by_member)
  if ircr is None:
    return buffers
  for e in range(per_member):  # in env order, as the host backend offers them
    env = jnp.arange(members) * per_member + e
    inside = t[env] < length[env][:, None]  # rows past the episode: zeros, as heap_rows pads

    def episode(k):
      values = pending[k][env]
      return jnp.where(inside.reshape(inside.shape + (1,) * (values.ndim - 2)), values, 0.0)

    offer = {k: episode(k) for k in ("observation", "action", "next_observation", "terminal")}
    offer.update(episode_return=transition["episode_return"][env], episode_length=length[env])
    buffers = jax.vmap(replay.heap_offer)(buffers, offer, done[env] & ircr)
  return buffers


class DeviceAgent(agent_state.AgentBase):
  """What the loop advances on the MJX backend: AgentBase's learner, buffers and counters, plus
  the device's env batch, running episodes and the jitted calls."""

  def __init__(self, config, pop, run, observation_size, action_size):
    super().__init__(config, pop, run, observation_size, action_size)
    e = config.env
    self.env = mjx_envs.EnvBatch(e.name, e.max_episode_steps)
    self.num_envs = e.num_envs
    # Env-major arrays follow their members: with members split over devices, so are their envs.
    self.env_state = jax.device_put(jax.jit(self.env.reset)(jnp.stack([
        jax.random.PRNGKey(m.seed * 100_003 + self.env_steps + j)
        for m in pop.members for j in range(e.num_envs)])), pop.by_member)
    self.pending = jax.device_put(_pending(pop.size * e.num_envs, e.max_episode_steps,
                                           observation_size, action_size), pop.by_member)
    self.keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(m.seed), 1) for m in pop.members])
    self.ircr = (jnp.asarray([m.kind == "ircr" for m in pop.members])
                 if "ircr" in pop.kinds else None)
    self.calls = {}  # (env steps per env, updates) -> jitted call
    self.explore, self.exploit = agent_state.acting(self.state.sac.actor.apply_fn)
    self.evaluate_returns = jax.jit(self._evaluate_returns)

  def _call_fn(self, steps, num_updates):
    """The jitted call: `steps` env steps of every env, then num_updates training steps."""
    config, pop, size, n = self.config, self.pop, self.pop.size, self.num_envs
    train = (learner_lib.train_steps(config, self.hp, pop.kinds, num_updates) if num_updates
             else None)

    def env_step(carry, i, params, first_step):
      env_state, pending, buffers, sums, counts = carry
      step = first_step + i * n
      observations = env_state.observation.reshape(size, n, -1)
      policy = self.explore(params, observations, self.keys, step)
      noise = jax.vmap(lambda key: jax.random.uniform(
          jax.random.fold_in(jax.random.fold_in(key, 2), step), policy.shape[1:], minval=-1.0,
          maxval=1.0))(self.keys)
      actions = jnp.where(step < config.train.warmup_steps, noise, policy)
      env_state, transition = self.env.step(env_state, actions.reshape(size * n, -1))
      pending = _record(pending, transition)
      buffers = jax.lax.cond(jnp.any(transition["done"]),
                             lambda b: _finish(b, pending, transition, size, self.ircr),
                             lambda b: b, buffers)
      finished = transition["done"].reshape(size, n)
      sums += jnp.sum(jnp.where(finished, transition["episode_return"].reshape(size, n), 0), 1)
      counts += jnp.sum(finished, 1, dtype=jnp.int32)
      return (env_state, pending, buffers, sums, counts), None

    def call(state, buffers, env_state, pending, kind_ids, first_step):
      carry = (env_state, pending, buffers, jnp.zeros(size), jnp.zeros(size, jnp.int32))
      carry, _ = jax.lax.scan(lambda c, i: env_step(c, i, state.sac.actor.params, first_step),
                              carry, jnp.arange(steps))
      env_state, pending, buffers, sums, counts = carry
      metrics = None
      if train is not None:
        shapes = jax.eval_shape(train, state, buffers, kind_ids)
        state, metrics = jax.lax.cond(
            jnp.min(buffers.count) > 0, lambda s: train(s, buffers, kind_ids),
            lambda s: (s, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes[1])), state)
      return state, buffers, env_state, pending, (sums, counts), metrics

    return jax.jit(call, donate_argnums=(0, 1, 2, 3))

  def call(self, interval):
    """One call: train.env_steps_per_call env steps (rounded up to env.num_envs) stored on the
    device and, past the warm-up, the owed training steps. Returns the env steps before it."""
    config, before = self.config, self.env_steps
    num_steps = min(config.train.env_steps_per_call, config.train.total_env_steps - before)
    steps = -(-num_steps // self.num_envs)
    self.env_steps = before + steps * self.num_envs
    num_updates = self.num_updates(self.env_steps - before)
    if self.env_steps < config.train.warmup_steps:
      num_updates = 0
    if (steps, num_updates) not in self.calls:
      self.calls[(steps, num_updates)] = self._call_fn(steps, num_updates)
    start = time.perf_counter()
    (self.state, self.buffer, self.env_state, self.pending, totals,
     metrics) = self.calls[(steps, num_updates)](self.state, self.buffer, self.env_state,
                                                 self.pending, self.pop.kind_ids, before)
    interval.episode_totals.append(totals)
    interval.env_steps += self.env_steps - before
    if metrics is not None:
      jax.block_until_ready(metrics)
      interval.update_time += time.perf_counter() - start  # the whole call: envs included
      interval.updates += num_updates
      interval.metrics.append(metrics)
    return before

  def meta(self):
    return self.run.meta(env_steps=self.env_steps, episodes=self._episodes_now())

  def _episodes_now(self):
    """Finished episodes of all members: every one entered its member's ring (num_episodes)."""
    return int(jnp.sum(self.buffer.num_episodes))

  def _evaluate_returns(self, params, keys):
    """[M, episodes] true (dense) returns of the deterministic policy, keys [M * episodes]."""
    size, steps = self.pop.size, self.config.env.max_episode_steps
    state = self.env.reset(keys)

    def body(carry, _):
      state, returns, active = carry
      observations = state.observation.reshape(size, -1, state.observation.shape[-1])
      actions = self.exploit(params, observations)
      state, transition = self.env.step(state, actions.reshape(keys.shape[0], -1))
      returns += jnp.where(active, transition["dense_reward"], 0.0)
      return (state, returns, active & ~transition["done"]), None

    start = (state, jnp.zeros(keys.shape[0]), jnp.ones(keys.shape[0], bool))
    (_, returns, _), _ = jax.lax.scan(body, start, None, length=steps)
    return returns.reshape(size, -1)

  def evaluate(self):
    with self.run.clock.excluded():  # keep evaluation out of the step timings
      seeds = agent_state.eval_seeds(self.pop, self.config.eval.episodes, self.env_steps)
      keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
      returns = jax.device_get(self.evaluate_returns(self.state.sac.actor.params, keys))
      episodes = self._episodes_now()
      return agent_state.log_evaluation(self.pop, self.run, returns, self.env_steps, episodes)

  def close(self):
    pass
