"""What both agent backends share (agent_loop.py runs either): the population, the member-stacked
learner states and replay buffers with their checkpoint restore, the interval of training
metrics between two logs, and the logging of an evaluation's returns.

The backends (config env.backend) differ only in where environments step and who acts:
  gymnasium  host_agent.HostAgent: gymnasium environments on the host (subprocesses optional),
             acting through a jitted policy, training in one jitted call per chunk;
  mjx        device_agent.DeviceAgent: MJX environments batched on the device; acting,
             stepping, storing and training in one jitted lax.scan per chunk.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rrd_jax.rl import curves, population, replay, rewards, sac
from rrd_jax.rl import learner as learner_lib
from rrd_jax.run import parallel
from rrd_jax.util.errors import UserError


class Interval:
  """Training metrics and timings of every member accumulated between two logs."""

  def __init__(self, size):
    self.update_time, self.updates, self.env_steps, self.metrics = 0.0, 0, 0, []
    self.episode_returns = [[] for _ in range(size)]
    self.episode_totals = []  # device backend: ([M] return sums, [M] episode counts) per call

  def _mean_returns(self):
    """[M] mean return of the episodes that finished in the interval (None: none finished)."""
    sums = [sum(r) for r in self.episode_returns]
    counts = [len(r) for r in self.episode_returns]
    for total, count in jax.device_get(self.episode_totals):
      sums = [s + float(t) for s, t in zip(sums, total)]
      counts = [c + int(n) for c, n in zip(counts, count)]
    return [s / c if c else None for s, c in zip(sums, counts)]

  def scalars(self, kinds, elapsed):
    """[{name: value}] per member; `kinds` the members' reward kinds (rrd_* only where used)."""
    fetched = jax.device_get(self.metrics)  # [calls] of {name: [M]}
    returns = self._mean_returns()
    out = []
    for m, kind in enumerate(kinds):
      row = {"train/env_steps_per_s": self.env_steps / elapsed}
      if self.updates:
        row["train/updates_per_s"] = self.updates / max(self.update_time, 1e-9)
      for name in (fetched[0] if fetched else {}):
        if name.startswith("rrd_") and not rewards.uses_reward_model(kind):
          continue
        row[f"train/{name}"] = float(np.mean([f[name][m] for f in fetched]))
      if returns[m] is not None:
        row["train/episode_return"] = returns[m]
      out.append(row)
    return out


class Population:
  """The members (seeds x reward kinds; one for a plain run), their run directories, reward kinds
  and the sharding that splits member-stacked pytrees over the local devices."""

  def __init__(self, config, workdir):
    self.members = population.members(config)
    self.size, self.kinds = len(self.members), population.reward_kinds(config)
    try:
      self.num_devices = parallel.member_devices(self.size, config.population.devices)
    except ValueError as e:
      raise UserError(str(e)) from None
    self.dirs = [population.member_dir(workdir, m, self.size) for m in self.members]
    self.member_configs = [] if self.size == 1 else [
        (d, population.member_config(config, m)) for d, m in zip(self.dirs, self.members)]
    self.by_member = parallel.member_sharding(self.num_devices)
    self.kind_ids = jnp.asarray([self.kinds.index(m.kind) for m in self.members], jnp.int32)

  def describe(self, config):
    return config.reward.kind if self.size == 1 else (
        f"a population of {self.size} ({', '.join(self.kinds)} x {config.population.seeds} seeds)")


def make_buffers(config, pop, observation_size, action_size):
  """Member-stacked replay buffers: arrays sized for the largest ring, each member's ring its own
  kind's capacity; an IRCR heap in every member when any member is IRCR (shapes must match)."""
  limits = [learner_lib.kind_settings(config, m.kind).replay_capacity for m in pop.members]
  ircr = "ircr" in pop.kinds
  return population.stack([
      replay.create(max(limits), observation_size, action_size, limit=limit,
                    heap_slots=config.ircr.heap_size if ircr else 1,
                    heap_episode_steps=config.env.max_episode_steps if ircr else 1)
      for limit in limits])


class AgentBase:
  """The member-stacked learner states and replay buffers (restored from the run's checkpoint if
  there is one), the env-step and episode counters, and the checkpoint items. A backend adds
  call(interval), evaluate() and close()."""

  def __init__(self, config, pop, run, observation_size, action_size):
    self.config, self.pop, self.run, self.action_size = config, pop, run, action_size
    self.hp = sac.SACParams.from_config(config.sac, action_size)
    state = learner_lib.create_members(config, self.hp, observation_size,
                                       [m.seed for m in pop.members], [m.kind for m in pop.members])
    state, buffer = jax.device_put((state, make_buffers(config, pop, observation_size,
                                                        action_size)), pop.by_member)
    items, meta = run.restore(self._items(state, buffer), keep=config.checkpoint.keep)
    self.state = flax.serialization.from_state_dict(state, items["learner"])
    self.buffer = flax.serialization.from_state_dict(buffer, items["buffer"])
    self.env_steps, self.episodes = ((int(meta["env_steps"]), int(meta["episodes"])) if meta
                                     else (0, 0))

  @staticmethod
  def _items(state, buffer):
    return {"learner": flax.serialization.to_state_dict(state),
            "buffer": flax.serialization.to_state_dict(buffer)}

  def items(self):
    return self._items(self.state, self.buffer)

  def meta(self):
    return self.run.meta(env_steps=self.env_steps, episodes=self.episodes)

  def num_updates(self, env_steps_taken):
    """Gradient steps owed for env_steps_taken env steps (train.updates_per_call per
    train.env_steps_per_call)."""
    train = self.config.train
    return round(train.updates_per_call * env_steps_taken / train.env_steps_per_call)


def acting(actor_apply):
  """Vmapped over members (not jitted; each backend jits or traces them in its own call):
  explore(params, obs [M, n, O], keys [M], step) -> [M, n, A], each member's stochastic policy
  with key fold_in(its act key, env step), and exploit(params, obs) (deterministic)."""
  explore = jax.vmap(lambda params, obs, key, step: sac.act(params, actor_apply, obs,
                                                            jax.random.fold_in(key, step)),
                     in_axes=(0, 0, 0, None))
  exploit = jax.vmap(lambda params, obs: sac.act(params, actor_apply, obs, None,
                                                 deterministic=True))
  return explore, exploit


def log_evaluation(pop, run, returns, env_steps, episodes):
  """Logs eval/return (mean, std over its episodes) per member from returns [M, episodes],
  redraws each member's learning curve; returns the rows."""
  rows = []
  for m, (directory, logger) in enumerate(zip(pop.dirs, run.loggers)):
    row = {"env_steps": env_steps, "eval/return": float(np.mean(returns[m])),
           "eval/return_std": float(np.std(returns[m])), "episodes": episodes}
    logger.write(env_steps, row)
    curves.save_learning_curve(directory)
    rows.append(row)
  run.log(f"env step {env_steps}: eval/return=" + ", ".join(
      f"{r['eval/return']:.1f}" + ("" if pop.size == 1 else f" ({m.name})")
      for m, r in zip(pop.members, rows)))
  return rows


def eval_seeds(pop, episodes, env_steps):
  """The evaluation episodes' seeds: episodes per member, fresh at every evaluation."""
  return [10_000_019 + m.seed * 1000 + env_steps + j for m in pop.members for j in range(episodes)]
