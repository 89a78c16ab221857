"""The agent loop (config.kind = "agent"): rrd-train --config configs/mujoco_rrd_sac.py:hopper.

Every train.env_steps_per_call environment steps (random actions during the warm-up, the
stochastic policy after), the episodes that finished are appended to the device replay buffer
and, once past the warm-up, train.updates_per_call training steps (RRD + SAC, learner.py) run in
one jitted lax.scan. Every eval.every_steps the deterministic policy runs eval.episodes episodes
and their true dense return is logged. With config.population several runs (seeds x reward
kinds) train side by side, vmapped, each in its own subdirectory (population.py).

The run's lifecycle (workdir, resume, checkpoints, metrics, progress, stopping,
final_metrics.json) is rrd_jax/lifecycle.py's. Writes WORKDIR/config.json, metrics.jsonl
(step = env steps), tensorboard/, learning_curve.png, final_metrics.json and checkpoints/.
A checkpoint holds the learner (networks, optimiser states, target critics, temperature, reward
model, rng, update count) and the replay buffer (with its episode fields and IRCR's heap), and
its meta the env-step and episode counters. The environments' running episodes are not saved: a
resumed run resets its environments (seeded from (seed, env_steps)) and their partial episodes,
never in the buffer, are dropped.
"""

import os
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rrd_jax import curves, files, lifecycle, parallel, plots, schema
from rrd_jax.errors import UserError
from rrd_jax.rl import envs, learner as learner_lib, population, replay, rewards, sac


class _Interval:
  """Training metrics and timings of every member accumulated between two logs."""

  def __init__(self, size):
    self.update_time, self.updates, self.env_steps, self.metrics = 0.0, 0, 0, []
    self.episode_returns = [[] for _ in range(size)]

  def scalars(self, kinds, elapsed):
    """[{name: value}] per member; `kinds` the members' reward kinds (rrd_* only where used)."""
    fetched = jax.device_get(self.metrics)  # [calls] of {name: [M]}
    out = []
    for m, kind in enumerate(kinds):
      row = {"train/env_steps_per_s": self.env_steps / elapsed}
      if self.updates:
        row["train/updates_per_s"] = self.updates / max(self.update_time, 1e-9)
      for name in (fetched[0] if fetched else {}):
        if name.startswith("rrd_") and not rewards.uses_reward_model(kind):
          continue
        row[f"train/{name}"] = float(np.mean([f[name][m] for f in fetched]))
      if self.episode_returns[m]:
        row["train/episode_return"] = float(np.mean(self.episode_returns[m]))
      out.append(row)
    return out


def _acting(actor_apply):
  """Jitted, vmapped over members: explore(params, obs [M, n, O], keys [M], step) -> [M, n, A]
  (per member key = fold_in(its act key, env step)) and exploit(params, obs) (deterministic)."""
  explore = jax.jit(jax.vmap(
      lambda params, obs, key, step: sac.act(params, actor_apply, obs,
                                             jax.random.fold_in(key, step)),
      in_axes=(0, 0, 0, None)))
  exploit = jax.jit(jax.vmap(
      lambda params, obs: sac.act(params, actor_apply, obs, None, deterministic=True)))
  return explore, exploit


def _collect(env_batch, num_steps, env_steps, warmup_steps, act, size):
  """Steps `env_batch` (size members x n envs) for num_steps env steps per member (rounded up to
  n), with random actions before warmup_steps and act(observations, env_steps) after. Returns
  ([finished episodes] per member, env_steps after)."""
  num_envs = len(env_batch.observations) // size
  finished = [[] for _ in range(size)]
  for _ in range(-(-num_steps // num_envs)):
    if env_steps < warmup_steps:
      actions = env_batch.random_actions()
    else:
      actions = act(env_batch.observations, env_steps)
    for episode in env_batch.step(actions)[0]:
      finished[episode.env_index // num_envs].append(episode)
    env_steps += num_envs
  return finished, env_steps


class _Population:
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


class _Evaluator:
  """eval.episodes episodes of the deterministic policy per member, in one env batch; logs
  eval/return (true dense) per member and redraws its learning curve."""

  def __init__(self, config, pop, run, exploit, action_size):
    self.pop, self.run, self.exploit, self.action_size = pop, run, exploit, action_size
    self.episodes = config.eval.episodes
    self.batch = envs.EnvBatch(config.env.name, config.env.max_episode_steps,
                               [0] * (pop.size * self.episodes), config.env.subprocesses)

  def __call__(self, actor, env_steps, episodes):
    size, members = self.pop.size, self.pop.members

    def policy(obs):  # [M * episodes, O] -> [M * episodes, A]
      by_member = obs.reshape((size, -1) + obs.shape[1:])
      return np.asarray(self.exploit(actor, by_member)).reshape(len(obs), self.action_size)

    returns = envs.evaluate(self.batch, policy, [10_000_019 + m.seed * 1000 + env_steps + j
                                                 for m in members for j in range(self.episodes)])
    returns = returns.reshape(size, -1)
    rows = []
    for m, (directory, logger) in enumerate(zip(self.pop.dirs, self.run.loggers)):
      row = {"env_steps": env_steps, "eval/return": float(np.mean(returns[m])),
             "eval/return_std": float(np.std(returns[m])), "episodes": episodes}
      logger.write(env_steps, row)
      curves.save_learning_curve(directory)
      rows.append(row)
    self.run.log(f"env step {env_steps}: eval/return=" + ", ".join(
        f"{r['eval/return']:.1f}" + ("" if size == 1 else f" ({m.name})")
        for m, r in zip(members, rows)))
    return rows

  def close(self):
    self.batch.close()


class _Agent:
  """What the loop advances: the member-stacked learner states and replay buffers, the env-step
  and episode counters, the environments and the acting functions."""

  def __init__(self, config, pop, run, observation_size, action_size):
    self.config, self.pop, self.run, self.action_size = config, pop, run, action_size
    self.hp = sac.SACParams.from_config(config.sac, action_size)
    state = learner_lib.create_members(config, self.hp, observation_size,
                                       [m.seed for m in pop.members], [m.kind for m in pop.members])
    state, buffer = jax.device_put((state, _buffers(config, pop, observation_size, action_size)),
                                   pop.by_member)
    items, meta = run.restore(self._items(state, buffer), keep=config.checkpoint.keep)
    self.state = flax.serialization.from_state_dict(state, items["learner"])
    self.buffer = flax.serialization.from_state_dict(buffer, items["buffer"])
    self.env_steps, self.episodes = (int(meta["env_steps"]), int(meta["episodes"])) if meta else (0, 0)
    self.insert = jax.jit(jax.vmap(replay.insert), donate_argnums=(0,))
    self.heap_put = jax.jit(replay.heap_put, donate_argnums=(0,))
    # IRCR's heap bookkeeping on the host (which slot a finished episode takes), as restored.
    self.heap_returns, self.heap_lengths = (np.array(x) for x in jax.device_get(
        (self.buffer.heap_return, self.buffer.heap_length)))
    self.train_calls = {}  # fused-step count -> jitted scan
    self.explore, exploit = _acting(self.state.sac.actor.apply_fn)
    self.env_batch = envs.EnvBatch(config.env.name, config.env.max_episode_steps,
                                   [m.seed * 100_003 + self.env_steps + j for m in pop.members
                                    for j in range(config.env.num_envs)], config.env.subprocesses)
    self.evaluator = _Evaluator(config, pop, run, exploit, action_size)
    # Acting runs where its arguments live: with train.act_on_host on an accelerator, on a host
    # copy of the actor refreshed after every training call (no device round trip per env step).
    self.host = jax.devices("cpu")[0] if (config.train.act_on_host
                                          and jax.default_backend() != "cpu") else None
    self.act_keys = jax.device_put(jnp.stack([jax.random.fold_in(jax.random.PRNGKey(m.seed), 1)
                                              for m in pop.members]), self.host or pop.by_member)
    self.actor = self._policy_params()

  @staticmethod
  def _items(state, buffer):
    return {"learner": flax.serialization.to_state_dict(state),
            "buffer": flax.serialization.to_state_dict(buffer)}

  def items(self):
    return self._items(self.state, self.buffer)

  def meta(self):
    return self.run.meta(env_steps=self.env_steps, episodes=self.episodes)

  def _policy_params(self):
    return jax.device_put(self.state.sac.actor.params, self.host)

  def act(self, observations, step):  # [M * n, O] -> [M * n, A]
    by_member = observations.reshape((self.pop.size, -1) + observations.shape[1:])
    actions = self.explore(self.actor, by_member, self.act_keys, step)
    return np.asarray(actions).reshape(-1, self.action_size)

  def call(self, interval):
    """One call: collect train.env_steps_per_call env steps, store the finished episodes and
    (past the warm-up) run the fused training steps. Returns the env steps before the call."""
    config, before = self.config, self.env_steps
    num_steps = min(config.train.env_steps_per_call, config.train.total_env_steps - before)
    finished, self.env_steps = _collect(self.env_batch, num_steps, before,
                                        config.train.warmup_steps, self.act, self.pop.size)
    for block in replay.member_blocks(finished):
      self.buffer = self.insert(self.buffer, block)
    self._update_heaps(finished)
    self.episodes += sum(map(len, finished))
    for m, done in enumerate(finished):
      interval.episode_returns[m] += [e.episode_return for e in done]
    interval.env_steps += self.env_steps - before
    num_updates = round(config.train.updates_per_call * (self.env_steps - before)
                        / config.train.env_steps_per_call)
    if (self.env_steps >= config.train.warmup_steps and int(jnp.min(self.buffer.count)) > 0
        and num_updates > 0):
      if num_updates not in self.train_calls:
        self.train_calls[num_updates] = learner_lib.make_train_steps(config, self.hp,
                                                                     self.pop.kinds, num_updates)
      start = time.perf_counter()
      self.state, step_metrics = self.train_calls[num_updates](self.state, self.buffer,
                                                               self.pop.kind_ids)
      jax.block_until_ready(step_metrics)
      self.actor = self._policy_params()
      interval.update_time += time.perf_counter() - start
      interval.updates += num_updates
      interval.metrics.append(step_metrics)
    return before

  def _update_heaps(self, finished):
    """IRCR members: each finished episode enters the heap if it ranks among the top ones."""
    for m, (member, done) in enumerate(zip(self.pop.members, finished)):
      if member.kind != "ircr":
        continue
      for episode in done:
        slot = replay.heap_slot(self.heap_returns[m], self.heap_lengths[m], episode.episode_return)
        if slot is None:
          continue
        rows = replay.heap_rows(episode, self.config.env.max_episode_steps)
        self.buffer = self.heap_put(self.buffer, m, slot, rows)
        self.heap_returns[m, slot], self.heap_lengths[m, slot] = episode.episode_return, len(episode)

  def evaluate(self):
    with self.run.clock.excluded():  # keep evaluation out of the step timings
      return self.evaluator(self.actor, self.env_steps, self.episodes)

  def close(self):
    self.env_batch.close()
    self.evaluator.close()


def _buffers(config, pop, observation_size, action_size):
  """Member-stacked replay buffers: arrays sized for the largest ring, each member's ring its own
  kind's capacity; an IRCR heap in every member when any member is IRCR (shapes must match)."""
  limits = [learner_lib.kind_settings(config, m.kind).replay_capacity for m in pop.members]
  ircr = "ircr" in pop.kinds
  return population.stack([
      replay.create(max(limits), observation_size, action_size, limit=limit,
                    heap_slots=config.ircr.heap_size if ircr else 1,
                    heap_episode_steps=config.env.max_episode_steps if ircr else 1)
      for limit in limits])


def _log_interval(run, pop, interval, env_steps, total):
  """Writes the interval's training metrics per member; raises UserError on a diverged loss."""
  rows = interval.scalars([m.kind for m in pop.members], run.clock.elapsed())
  for member, row in zip(pop.members, rows):
    lifecycle.check_finite(row, ("train/critic_loss", "train/rrd_loss"), f"env step {env_steps}"
                           + ("" if pop.size == 1 else f" (member {member.name})"))
  for logger, row in zip(run.loggers, rows):
    logger.write(env_steps, {"env_steps": env_steps, **row})
  run.clock.reset()
  if run.quiet():
    shown = ("train/episode_return", "train/critic_loss", "train/rrd_loss", "train/alpha",
             "train/env_steps_per_s")
    run.log(f"env step {env_steps}/{total}: " + "; ".join(
        ("" if pop.size == 1 else f"{member.name} ")
        + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k in shown)
        for member, row in zip(pop.members, rows)))


def _train(run, config, pop, agent, stop):
  """Calls until train.total_env_steps or a stop request; the last evaluation's rows (or None)."""
  total, results, interval = config.train.total_env_steps, None, _Interval(pop.size)
  while agent.env_steps < total and not stop.requested:
    before = agent.call(interval)
    after = agent.env_steps
    run.bar.update(after - before)
    if lifecycle.crossed(before, after, config.train.log_every_steps) or after >= total:
      _log_interval(run, pop, interval, after, total)
      interval = _Interval(pop.size)
    if lifecycle.crossed(before, after, config.eval.every_steps) or after >= total:
      results = agent.evaluate()
    if lifecycle.crossed(before, after, config.checkpoint.every_steps):
      run.save(after, agent.items(), agent.meta())
  return results


def _report(run, config, pop, results, env_steps):
  """The run's final metrics, or {member name: final metrics} with a population's
  comparison.{png,json}."""
  workdir = run.workdir
  if pop.size == 1:
    run.log(f"Done: eval/return={results[0]['eval/return']:.1f} at env step {env_steps}. Metrics "
            f"in {workdir}/metrics.jsonl, curve in {workdir}/learning_curve.png, checkpoints in "
            f"{run.checkpoint_dir}.")
    return results[0]
  groups = curves.group_runs(pop.dirs)
  plots.save(curves.comparison_figure(groups, f"{config.env.name}, {pop.size} runs"),
             os.path.join(workdir, "comparison.png"))
  comparison = curves.summary(groups)
  files.write_json(os.path.join(workdir, "comparison.json"), comparison)
  for label, row in comparison.items():
    run.log(f"{label}: eval/return {row['final_return_mean']:.1f} +- "
            f"{row['final_return_std']:.1f} over {row['runs']} seed(s)")
  run.log(f"Done at env step {env_steps}: runs in {workdir}/<kind>_seed<seed>/, comparison in "
          f"{workdir}/comparison.png and comparison.json, checkpoints in {run.checkpoint_dir}.")
  return {m.name: row for m, row in zip(pop.members, results)}


def train_and_evaluate(config, workdir, log=print):
  """Trains per `config` into `workdir` (resuming a run found there); returns the final metrics
  (of the run, or {member name: final metrics} for a population)."""
  schema.validate_agent(config)
  with lifecycle.Run(config, workdir, unit="env step", log=log) as run:
    return _run(run, config)


def _run(run, config):
  """Setup, the calls, then the final evaluation and save: the final metrics."""
  observation_size, action_size = envs.env_dims(config.env.name)
  pop = _Population(config, run.workdir)
  run.write_config({"observation_size": observation_size, "action_size": action_size,
                    "devices": [str(d) for d in jax.devices()],
                    "member_devices": pop.num_devices}, members=pop.member_configs)
  agent = _Agent(config, pop, run, observation_size, action_size)
  start, total = agent.env_steps, config.train.total_env_steps
  if run.resume:
    run.log(f"Resuming the run in {run.workdir} from env step {start}" +
            (f" ({int(jnp.sum(agent.buffer.count))} transitions in the replay buffer)." if start
             else " (no checkpoint yet)."))
  run.log(f"{config.env.name}, reward {pop.describe(config)}: training to {total} env steps on "
          f"{jax.default_backend()}; workdir {run.workdir}.")
  run.start(start, total, dirs=pop.dirs, description="env steps")
  try:
    with run.stop_requests() as stop:
      results = _train(run, config, pop, agent, stop)
    if stop.requested and agent.env_steps < total:
      raise run.stopped(stop, agent.env_steps, agent.items(), agent.meta())
    results = results or run.finished_results(start, total) or agent.evaluate()
  finally:
    agent.close()
  run.finish(agent.env_steps, agent.items(), agent.meta(), results)
  return _report(run, config, pop, results, agent.env_steps)
