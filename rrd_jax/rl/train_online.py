"""The online loop: python -m rrd_jax.train --config configs/mujoco_rrd_sac.py:hopper --workdir DIR.

Every train.env_steps_per_call environment steps (random actions during the warm-up, the
stochastic policy after), the episodes that finished are appended to the device replay buffer
and, once past the warm-up, train.updates_per_call training steps (RRD + SAC, learner.py) run in
one jitted lax.scan. Every eval.every_steps the deterministic policy runs eval.episodes episodes
and their true dense return is logged. Writes WORKDIR/config.json, metrics.jsonl (step =
env_steps), tensorboard/, learning_curve.png, final_metrics.json and checkpoints/ (agent + replay
buffer; checkpointing.py says what resumes). Rerunning with the same --workdir resumes.
"""

import json
import os
import time

import jax
import numpy as np

from rrd_jax import config_utils, losses, metrics, plot_runs, run_dir
from rrd_jax.errors import UserError
from rrd_jax.rl import checkpointing, envs, learner as learner_lib, replay, rewards, sac


def _check(condition, message):
  if not condition:
    raise UserError(message)


def validate(config):
  """Raises UserError naming the first invalid value."""
  envs.check_env_name(config.env.name)
  kind = config.reward.kind
  _check(kind in rewards.REWARD_KINDS,
         f"reward.kind must be one of {', '.join(rewards.REWARD_KINDS)}, got {kind!r}")
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
  bias_correction = kind == "rrd_lrd" or r.bias_correction
  _check(not (bias_correction and rewards.uses_reward_model(kind)) or r.sample_size >= 2,
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
  """Training metrics and timings accumulated between two logs."""

  def __init__(self):
    self.start, self.update_time, self.updates, self.env_steps = time.perf_counter(), 0.0, 0, 0
    self.metrics, self.episode_returns, self.excluded = [], [], 0.0

  def scalars(self):
    elapsed = max(time.perf_counter() - self.start - self.excluded, 1e-9)
    out = {"train/env_steps_per_s": self.env_steps / elapsed}
    if self.updates:
      out["train/updates_per_s"] = self.updates / max(self.update_time, 1e-9)
    if self.metrics:
      fetched = jax.device_get(self.metrics)
      out.update({f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]})
    if self.episode_returns:
      out["train/episode_return"] = float(np.mean(self.episode_returns))
    return out


def train_and_evaluate(config, workdir, log=print):
  """Trains per `config` into `workdir` (resuming a run found there); returns the final metrics."""
  validate(config)
  workdir, resume = run_dir.prepare(workdir, config, log=log)
  checkpoint_dir = os.path.abspath(os.path.expanduser(config.checkpoint.dir or
                                                      os.path.join(workdir, "checkpoints")))
  observation_size, action_size = envs.env_dims(config.env.name)
  config_utils.write_run_config(os.path.join(workdir, "config.json"), config, {
      "checkpoint_dir": checkpoint_dir, "observation_size": observation_size,
      "action_size": action_size, "devices": [str(d) for d in jax.devices()]})
  hp = sac.SACParams.from_config(config.sac, action_size)
  key = jax.random.PRNGKey(config.seed)
  state = learner_lib.create(config, hp, observation_size, jax.random.fold_in(key, 0))
  buffer = replay.create(config.replay.capacity, observation_size, action_size)
  checkpointer = checkpointing.OnlineCheckpointer(checkpoint_dir, keep=config.checkpoint.keep)
  env_steps, episodes = 0, 0
  if resume:
    restored = checkpointer.restore_latest(state, buffer)
    if restored is not None:
      state, buffer, meta = restored
      env_steps, episodes = int(meta["env_steps"]), int(meta["episodes"])
    log(f"Resuming the run in {workdir} from env step {env_steps}" +
        (f" ({int(buffer.count)} transitions in the replay buffer)." if env_steps
         else " (no checkpoint yet)."))
    run_dir.truncate_metrics(workdir, env_steps)
  total = config.train.total_env_steps
  log(f"{config.env.name}, reward {config.reward.kind}: training to {total} env steps on "
      f"{jax.default_backend()}; workdir {workdir}.")

  insert = jax.jit(replay.insert, donate_argnums=(0,))
  train_calls = {}  # fused-step count -> jitted scan
  actor_apply = state.sac.actor.apply_fn
  explore = jax.jit(lambda params, obs, k: sac.act(params, actor_apply, obs, k))
  exploit = jax.jit(lambda params, obs: sac.act(params, actor_apply, obs, None, deterministic=True))
  env_batch = envs.EnvBatch(config.env.name, config.env.num_envs, config.env.max_episode_steps,
                            seed=config.seed * 100_003 + env_steps)
  act_key = jax.random.fold_in(key, 1)
  logger = metrics.MetricsLogger(workdir)
  bar = metrics.progress_bar(total, "env steps", initial=min(env_steps, total))
  interval, results = _Interval(), None

  def meta():
    return {"env_steps": env_steps, "episodes": episodes,
            "config": json.loads(config.to_json_best_effort())}

  def run_eval():
    start = time.perf_counter()
    params = state.sac.actor.params
    returns = envs.evaluate(config.env.name, config.env.max_episode_steps,
                            lambda obs: np.asarray(exploit(params, obs)), config.eval.episodes,
                            seed=10_000_019 + config.seed * 1000 + env_steps)
    scalars = {"env_steps": env_steps, "eval/return": float(np.mean(returns)),
               "eval/return_std": float(np.std(returns)), "episodes": episodes}
    logger.write(env_steps, scalars)
    plot_runs.save_learning_curve(workdir)
    log(f"env step {env_steps}: eval/return={scalars['eval/return']:.1f}")
    interval.excluded += time.perf_counter() - start
    return scalars

  while env_steps < total:
    before = env_steps
    steps_this_call = min(config.train.env_steps_per_call, total - env_steps)
    finished = []
    for _ in range(-(-steps_this_call // config.env.num_envs)):
      if env_steps < config.train.warmup_steps:
        actions = env_batch.random_actions()
      else:
        actions = np.asarray(explore(state.sac.actor.params, env_batch.observations,
                                     jax.random.fold_in(act_key, env_steps)))
      finished += env_batch.step(actions)
      env_steps += config.env.num_envs
    for block in replay.episodes_to_rows(finished):
      buffer = insert(buffer, block)
    episodes += len(finished)
    interval.episode_returns += [e.episode_return for e in finished]
    interval.env_steps += env_steps - before
    num_updates = round(config.train.updates_per_call * (env_steps - before)
                        / config.train.env_steps_per_call)
    if env_steps >= config.train.warmup_steps and int(buffer.count) > 0 and num_updates > 0:
      if num_updates not in train_calls:
        train_calls[num_updates] = learner_lib.make_train_steps(config, hp, num_updates)
      update_start = time.perf_counter()
      state, step_metrics = train_calls[num_updates](state, buffer)
      jax.block_until_ready(step_metrics)
      interval.update_time += time.perf_counter() - update_start
      interval.updates += num_updates
      interval.metrics.append(step_metrics)
    bar.update(env_steps - before)
    if _crossed(before, env_steps, config.train.log_every_steps) or env_steps >= total:
      scalars = interval.scalars()
      for name in ("train/critic_loss", "train/rrd_loss"):
        if name in scalars and not np.isfinite(scalars[name]):
          raise UserError(f"training diverged: {name} is {scalars[name]} at env step {env_steps}")
      logger.write(env_steps, {"env_steps": env_steps, **scalars})
      if bar.disable:
        log(f"env step {env_steps}/{total}: " + ", ".join(
            f"{k}={v:.4g}" for k, v in scalars.items() if k in (
                "train/episode_return", "train/critic_loss", "train/rrd_loss", "train/alpha",
                "train/env_steps_per_s")))
      interval = _Interval()
    if _crossed(before, env_steps, config.eval.every_steps) or env_steps >= total:
      results = run_eval()
    if _crossed(before, env_steps, config.checkpoint.every_steps):
      checkpointer.save(env_steps, state, buffer, meta())
  bar.close()
  env_batch.close()
  final_path = os.path.join(workdir, "final_metrics.json")
  if results is None and os.path.exists(final_path):  # a finished run resumed: nothing to do
    with open(final_path, encoding="utf-8") as f:
      results = json.load(f)
  elif results is None:
    results = run_eval()
  if config.checkpoint.save_final:
    checkpointer.save(env_steps, state, buffer, meta())
  checkpointer.close()
  logger.close()
  with open(final_path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  log(f"Done: eval/return={results['eval/return']:.1f} at env step {env_steps}. Metrics in "
      f"{workdir}/metrics.jsonl, curve in {workdir}/learning_curve.png, checkpoints in "
      f"{checkpoint_dir}.")
  return results
