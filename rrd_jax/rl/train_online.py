"""The online loop: python -m rrd_jax.train --config configs/mujoco_rrd_sac.py:hopper --workdir DIR.

Every train.env_steps_per_call environment steps (random actions during the warm-up, the
stochastic policy after), the episodes that finished are appended to the device replay buffer
and, once past the warm-up, train.updates_per_call training steps (RRD + SAC, learner.py) run in
one jitted lax.scan. Every eval.every_steps the deterministic policy runs eval.episodes episodes
and their true dense return is logged. Writes WORKDIR/config.json, metrics.jsonl (step =
env_steps), tensorboard/, learning_curve.png, final_metrics.json and checkpoints/ (agent + replay
buffer; checkpointing.py says what resumes). Rerunning with the same --workdir resumes. With
config.population several runs (seeds x reward kinds) train side by side, vmapped, each in its
own subdirectory (population.py).
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rrd_jax import config_utils, interrupt, losses, metrics, parallel, plot_runs, plots, run_dir
from rrd_jax.errors import UserError
from rrd_jax.rl import checkpointing, envs, learner as learner_lib, population, replay, rewards, sac


def _check(condition, message):
  if not condition:
    raise UserError(message)


def validate(config):
  """Raises UserError naming the first invalid value."""
  envs.check_env_name(config.env.name)
  known = ", ".join(rewards.REWARD_KINDS)
  kind = config.reward.kind
  _check(kind in rewards.REWARD_KINDS, f"reward.kind must be one of {known}, got {kind!r}")
  listed = config.population.reward_kinds
  unknown = [k.strip() for k in str(listed).split(",")
             if k.strip() not in rewards.REWARD_KINDS + ("",)]
  if unknown:
    raise UserError(f"population.reward_kinds must be a comma-separated list of {known}, got "
                    f"{unknown[0]!r} in {listed!r}")
  _check(config.population.seeds >= 1,
         f"population.seeds must be >= 1, got {config.population.seeds}")
  kinds = population.reward_kinds(config)
  try:
    parallel.member_devices(len(population.members(config)), config.population.devices)
  except ValueError as e:
    raise UserError(str(e)) from None
  s = config.sac
  _check(0.0 <= s.gamma <= 1.0, f"sac.gamma must be in [0, 1], got {s.gamma}")
  _check(0.0 <= s.polyak < 1.0, f"sac.polyak must be in [0, 1), got {s.polyak}")
  for name in ("actor_lr", "critic_lr"):
    _check(s[name] > 0, f"sac.{name} must be > 0, got {s[name]}")
  _check(s.alpha_lr >= 0, f"sac.alpha_lr must be >= 0, got {s.alpha_lr}")
  _check(s.init_alpha > 0, f"sac.init_alpha must be > 0, got {s.init_alpha}")
  _check(s.batch_size >= 1, f"sac.batch_size must be >= 1, got {s.batch_size}")
  _check(s.num_critics >= 1, f"sac.num_critics must be >= 1, got {s.num_critics}")
  _check(len(s.hidden_sizes) >= 1 and all(h >= 1 for h in s.hidden_sizes),
         f"sac.hidden_sizes must be positive layer sizes, got {tuple(s.hidden_sizes)}")
  _check(s.log_std_min < s.log_std_max,
         f"sac.log_std_min must be < sac.log_std_max, got {s.log_std_min} and {s.log_std_max}")
  r = config.rrd
  _check(r.sample_size >= 1, f"rrd.sample_size must be >= 1, got {r.sample_size}")
  _check(r.episodes_per_batch >= 1, f"rrd.episodes_per_batch must be >= 1, got {r.episodes_per_batch}")
  _check(r.loss_form in losses.LOSS_FORMS,
         f"rrd.loss_form must be one of {', '.join(losses.LOSS_FORMS)}, got {r.loss_form!r}")
  _check(r.learning_rate > 0, f"rrd.learning_rate must be > 0, got {r.learning_rate}")
  corrected = any(learner_lib.bias_correction(config, k) and rewards.uses_reward_model(k)
                  for k in kinds)
  _check(not corrected or r.sample_size >= 2,
         f"bias correction (reward.kind rrd_lrd) needs rrd.sample_size >= 2, got {r.sample_size}")
  e, t = config.env, config.train
  _check(e.max_episode_steps >= 1, f"env.max_episode_steps must be >= 1, got {e.max_episode_steps}")
  _check(e.num_envs >= 1, f"env.num_envs must be >= 1, got {e.num_envs}")
  _check(config.replay.capacity >= e.max_episode_steps,
         f"replay.capacity ({config.replay.capacity}) must hold a whole episode "
         f"(env.max_episode_steps = {e.max_episode_steps})")
  _check(t.total_env_steps >= 0, f"train.total_env_steps must be >= 0, got {t.total_env_steps}")
  _check(t.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {t.warmup_steps}")
  _check(t.env_steps_per_call >= 1 and t.env_steps_per_call % e.num_envs == 0,
         f"train.env_steps_per_call must be a positive multiple of env.num_envs ({e.num_envs}), "
         f"got {t.env_steps_per_call}")
  _check(t.updates_per_call >= 0, f"train.updates_per_call must be >= 0, got {t.updates_per_call}")
  _check(t.log_every_steps >= 1, f"train.log_every_steps must be >= 1, got {t.log_every_steps}")
  _check(config.eval.every_steps >= 1, f"eval.every_steps must be >= 1, got {config.eval.every_steps}")
  _check(config.eval.episodes >= 1, f"eval.episodes must be >= 1, got {config.eval.episodes}")
  _check(config.checkpoint.every_steps >= 0,
         f"checkpoint.every_steps must be >= 0, got {config.checkpoint.every_steps}")
  _check(config.checkpoint.keep >= 1, f"checkpoint.keep must be >= 1, got {config.checkpoint.keep}")


def _crossed(before, after, every):
  """Whether a multiple of `every` lies in (before, after]."""
  return every > 0 and after // every > before // every


class _Interval:
  """Training metrics and timings of every member accumulated between two logs."""

  def __init__(self, size):
    self.start, self.update_time, self.updates, self.env_steps = time.perf_counter(), 0.0, 0, 0
    self.metrics, self.excluded = [], 0.0
    self.episode_returns = [[] for _ in range(size)]

  def scalars(self, kinds):
    """[{name: value}] per member; `kinds` the members' reward kinds (rrd_* only where used)."""
    elapsed = max(time.perf_counter() - self.start - self.excluded, 1e-9)
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


class _Evaluator:
  """eval.episodes episodes of the deterministic policy per member, in one env batch; logs
  eval/return (true dense) per member and redraws its learning curve."""

  def __init__(self, config, members, dirs, loggers, exploit, action_size, log):
    self.members, self.dirs, self.loggers, self.log = members, dirs, loggers, log
    self.exploit, self.action_size, self.episodes = exploit, action_size, config.eval.episodes
    self.batch = envs.EnvBatch(config.env.name, config.env.max_episode_steps,
                               [0] * (len(members) * self.episodes), config.env.subprocesses)

  def __call__(self, actor, env_steps, episodes):
    size = len(self.members)

    def policy(obs):  # [M * episodes, O] -> [M * episodes, A]
      by_member = obs.reshape((size, -1) + obs.shape[1:])
      return np.asarray(self.exploit(actor, by_member)).reshape(len(obs), self.action_size)

    returns = envs.evaluate(self.batch, policy, [10_000_019 + m.seed * 1000 + env_steps + j
                                                 for m in self.members
                                                 for j in range(self.episodes)])
    returns = returns.reshape(size, -1)
    rows = []
    for m, (directory, logger) in enumerate(zip(self.dirs, self.loggers)):
      row = {"env_steps": env_steps, "eval/return": float(np.mean(returns[m])),
             "eval/return_std": float(np.std(returns[m])), "episodes": episodes}
      logger.write(env_steps, row)
      plot_runs.save_learning_curve(directory)
      rows.append(row)
    self.log(f"env step {env_steps}: eval/return=" + ", ".join(
        f"{r['eval/return']:.1f}" + ("" if size == 1 else f" ({m.name})")
        for m, r in zip(self.members, rows)))
    return rows

  def close(self):
    self.batch.close()


def _log_interval(interval, members, loggers, env_steps, total, bar, log):
  """Writes the interval's training metrics per member; raises UserError on a diverged loss."""
  size = len(members)
  rows = interval.scalars([m.kind for m in members])
  for member, row in zip(members, rows):
    for name in ("train/critic_loss", "train/rrd_loss"):
      if name in row and not np.isfinite(row[name]):
        raise UserError(f"training diverged: {name} is {row[name]} at env step {env_steps}"
                        + ("" if size == 1 else f" (member {member.name})"))
  for logger, row in zip(loggers, rows):
    logger.write(env_steps, {"env_steps": env_steps, **row})
  if bar.disable:
    shown = ("train/episode_return", "train/critic_loss", "train/rrd_loss", "train/alpha",
             "train/env_steps_per_s")
    log(f"env step {env_steps}/{total}: " + "; ".join(
        ("" if size == 1 else f"{member.name} ")
        + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k in shown)
        for member, row in zip(members, rows)))


def _finish(config, workdir, checkpoint_dir, members, dirs, loggers, results, env_steps, log):
  """Writes final_metrics.json per member (and a population's comparison.{png,json}); returns
  the run's final metrics, or {member name: final metrics}."""
  for logger, directory, row in zip(loggers, dirs, results):
    logger.close()
    with open(os.path.join(directory, "final_metrics.json"), "w", encoding="utf-8") as f:
      json.dump(row, f, indent=2)
  if len(members) == 1:
    log(f"Done: eval/return={results[0]['eval/return']:.1f} at env step {env_steps}. Metrics in "
        f"{workdir}/metrics.jsonl, curve in {workdir}/learning_curve.png, checkpoints in "
        f"{checkpoint_dir}.")
    return results[0]
  groups = plot_runs.group_runs(dirs)
  plots.save(plot_runs.comparison_figure(groups, f"{config.env.name}, {len(members)} runs"),
             os.path.join(workdir, "comparison.png"))
  comparison = plot_runs.summary(groups)
  with open(os.path.join(workdir, "comparison.json"), "w", encoding="utf-8") as f:
    json.dump(comparison, f, indent=2)
  for label, row in comparison.items():
    log(f"{label}: eval/return {row['final_return_mean']:.1f} +- {row['final_return_std']:.1f} "
        f"over {row['runs']} seed(s)")
  log(f"Done at env step {env_steps}: runs in {workdir}/<kind>_seed<seed>/, comparison in "
      f"{workdir}/comparison.png and comparison.json, checkpoints in {checkpoint_dir}.")
  return {m.name: row for m, row in zip(members, results)}


def _stopped(stop, config, checkpointer, env_steps, state, buffer, meta, loggers, checkpoint_dir):
  """On SIGINT / SIGTERM: saves the run where it stands (if checkpoints are on at all) and returns
  the Interrupted to raise, whose one line says what a rerun resumes from."""
  saving = interrupt.saves_on_stop(config.checkpoint)
  if saving:
    checkpointer.save(env_steps, state, buffer, meta)
  latest = checkpointer.manager.latest_step()
  checkpointer.close()
  for logger in loggers:
    logger.close()
  return stop.interrupted(f"env step {env_steps}", checkpoint_dir, saving,
                          resumes_from=f"env step {latest}" if latest else "the start")


def train_and_evaluate(config, workdir, log=print):
  """Trains per `config` into `workdir` (resuming a run found there); returns the final metrics
  (of the run, or {member name: final metrics} for a population)."""
  validate(config)
  workdir, resume = run_dir.prepare(workdir, config, log=log)
  checkpoint_dir = os.path.abspath(os.path.expanduser(config.checkpoint.dir or
                                                      os.path.join(workdir, "checkpoints")))
  observation_size, action_size = envs.env_dims(config.env.name)
  members = population.members(config)
  size, kinds = len(members), population.reward_kinds(config)
  num_devices = parallel.member_devices(size, config.population.devices)
  facts = {"checkpoint_dir": checkpoint_dir, "observation_size": observation_size,
           "action_size": action_size, "devices": [str(d) for d in jax.devices()],
           "member_devices": num_devices}
  config_utils.write_run_config(os.path.join(workdir, "config.json"), config, facts)
  dirs = [population.member_dir(workdir, m, size) for m in members]
  if size > 1:
    for member, directory in zip(members, dirs):
      os.makedirs(directory, exist_ok=True)
      config_utils.write_run_config(os.path.join(directory, "config.json"),
                                    population.member_config(config, member),
                                    dict(facts, population_workdir=workdir))
  kind_ids = jnp.asarray([kinds.index(m.kind) for m in members], jnp.int32)
  hp = sac.SACParams.from_config(config.sac, action_size)
  state = learner_lib.create_members(config, hp, observation_size, [m.seed for m in members])
  buffer = population.stack([replay.create(config.replay.capacity, observation_size, action_size)]
                            * size)
  # Members are independent: their stacked states and buffers split over the local devices.
  by_member = parallel.member_sharding(num_devices)
  state, buffer, kind_ids = jax.device_put((state, buffer, kind_ids), by_member)
  checkpointer = checkpointing.OnlineCheckpointer(checkpoint_dir, keep=config.checkpoint.keep)
  env_steps, episodes = 0, 0
  if resume:
    restored = checkpointer.restore_latest(state, buffer)
    if restored is not None:
      state, buffer, meta = restored
      env_steps, episodes = int(meta["env_steps"]), int(meta["episodes"])
    log(f"Resuming the run in {workdir} from env step {env_steps}" +
        (f" ({int(jnp.sum(buffer.count))} transitions in the replay buffer)." if env_steps
         else " (no checkpoint yet)."))
    for directory in dirs:
      run_dir.truncate_metrics(directory, env_steps)
  total = config.train.total_env_steps
  who = config.reward.kind if size == 1 else (
      f"a population of {size} ({', '.join(kinds)} x {config.population.seeds} seeds)")
  log(f"{config.env.name}, reward {who}: training to {total} env steps on "
      f"{jax.default_backend()}; workdir {workdir}.")

  insert = jax.jit(jax.vmap(replay.insert), donate_argnums=(0,))
  train_calls = {}  # fused-step count -> jitted scan
  explore, exploit = _acting(state.sac.actor.apply_fn)
  env_batch = envs.EnvBatch(config.env.name, config.env.max_episode_steps,
                            [m.seed * 100_003 + env_steps + j for m in members
                             for j in range(config.env.num_envs)], config.env.subprocesses)
  # Acting runs where its arguments live: with train.act_on_host on an accelerator, on a host
  # copy of the actor refreshed after every training call (no device round trip per env step).
  host = jax.devices("cpu")[0] if (config.train.act_on_host
                                   and jax.default_backend() != "cpu") else None
  policy_params = lambda: jax.device_put(state.sac.actor.params, host)  # noqa: E731
  act_keys = jax.device_put(jnp.stack([jax.random.fold_in(jax.random.PRNGKey(m.seed), 1)
                                       for m in members]), host or by_member)
  actor = policy_params()

  def act(observations, step):  # [M * n, O] -> [M * n, A]
    by_member = observations.reshape((size, -1) + observations.shape[1:])
    return np.asarray(explore(actor, by_member, act_keys, step)).reshape(-1, action_size)

  loggers = [metrics.MetricsLogger(d) for d in dirs]
  evaluator = _Evaluator(config, members, dirs, loggers, exploit, action_size, log)
  bar = metrics.progress_bar(total, "env steps", initial=min(env_steps, total))
  interval, results = _Interval(size), None

  def meta():
    return {"env_steps": env_steps, "episodes": episodes,
            "config": json.loads(config.to_json_best_effort())}

  def run_eval():
    start = time.perf_counter()
    rows = evaluator(actor, env_steps, episodes)
    interval.excluded += time.perf_counter() - start
    return rows

  with interrupt.StopRequests() as stop:
    try:
      while env_steps < total and not stop.requested:
        before = env_steps
        num_steps = min(config.train.env_steps_per_call, total - env_steps)
        finished, env_steps = _collect(env_batch, num_steps, env_steps, config.train.warmup_steps,
                                       act, size)
        for block in replay.member_blocks(finished):
          buffer = insert(buffer, block)
        episodes += sum(map(len, finished))
        for m, done in enumerate(finished):
          interval.episode_returns[m] += [e.episode_return for e in done]
        interval.env_steps += env_steps - before
        num_updates = round(config.train.updates_per_call * (env_steps - before)
                            / config.train.env_steps_per_call)
        if (env_steps >= config.train.warmup_steps and int(jnp.min(buffer.count)) > 0
            and num_updates > 0):
          if num_updates not in train_calls:
            train_calls[num_updates] = learner_lib.make_train_steps(config, hp, kinds, num_updates)
          update_start = time.perf_counter()
          state, step_metrics = train_calls[num_updates](state, buffer, kind_ids)
          jax.block_until_ready(step_metrics)
          actor = policy_params()
          interval.update_time += time.perf_counter() - update_start
          interval.updates += num_updates
          interval.metrics.append(step_metrics)
        bar.update(env_steps - before)
        if _crossed(before, env_steps, config.train.log_every_steps) or env_steps >= total:
          _log_interval(interval, members, loggers, env_steps, total, bar, log)
          interval = _Interval(size)
        if _crossed(before, env_steps, config.eval.every_steps) or env_steps >= total:
          results = run_eval()
        if _crossed(before, env_steps, config.checkpoint.every_steps):
          checkpointer.save(env_steps, state, buffer, meta())
      bar.close()
      if stop.requested and env_steps < total:
        raise _stopped(stop, config, checkpointer, env_steps, state, buffer, meta(), loggers,
                       checkpoint_dir)
      final_paths = [os.path.join(d, "final_metrics.json") for d in dirs]
      if results is None and all(map(os.path.exists, final_paths)):  # a finished run resumed
        results = []
        for path in final_paths:
          with open(path, encoding="utf-8") as f:
            results.append(json.load(f))
      elif results is None:
        results = run_eval()
    finally:
      bar.close()
      env_batch.close()
      evaluator.close()
  if config.checkpoint.save_final:
    checkpointer.save(env_steps, state, buffer, meta())
  checkpointer.close()
  return _finish(config, workdir, checkpoint_dir, members, dirs, loggers, results, env_steps, log)
