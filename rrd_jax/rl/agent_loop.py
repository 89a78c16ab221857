"""The agent loop (config.kind = "agent"): rrd-train --config configs/mujoco_rrd_sac.py:hopper.

Every train.env_steps_per_call environment steps (random actions during the warm-up, the
stochastic policy after), the episodes that finished are appended to the device replay buffer
and, once past the warm-up, train.updates_per_call training steps (RRD + SAC, learner.py) run in
one jitted lax.scan. Where the environments step is config.env.backend's (agent_state.py):
gymnasium on the host (host_agent.py) or MJX on the device (device_agent.py). Every
eval.every_steps the deterministic policy runs eval.episodes episodes
and their true dense return is logged. With config.population several runs (seeds x reward
kinds) train side by side, vmapped, each in its own subdirectory (population.py).

The run's lifecycle (workdir, resume, checkpoints, metrics, progress, stopping,
final_metrics.json) is rrd_jax/run/lifecycle.py's. Writes WORKDIR/config.json, metrics.jsonl
(step = env steps), tensorboard/, learning_curve.png, final_metrics.json and checkpoints/.
A checkpoint holds the learner (networks, optimiser states, target critics, temperature, reward
model, rng, update count) and the replay buffer (with its episode fields and IRCR's heap), and
its meta the env-step and episode counters. The environments' running episodes are not saved: a
resumed run resets its environments (seeded from (seed, env_steps)) and their partial episodes,
never in the buffer, are dropped.
"""

import os

import jax
import jax.numpy as jnp

from rrd_jax.config import schema
from rrd_jax.rl import agent_state, curves, envs, host_agent
from rrd_jax.run import lifecycle
from rrd_jax.train import plots
from rrd_jax.util import files


def _make_agent(config, pop, run, observation_size, action_size):
  """The agent of config.env.backend (agent_state.py)."""
  if config.env.backend == "mjx":
    from rrd_jax.rl import device_agent  # pylint: disable=import-outside-toplevel  (imports MJX)
    return device_agent.DeviceAgent(config, pop, run, observation_size, action_size)
  return host_agent.HostAgent(config, pop, run, observation_size, action_size)


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
    run.log(f"env step {env_steps}/{total} ({run.progress_text(env_steps)}): " + "; ".join(
        ("" if pop.size == 1 else f"{member.name} ")
        + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k in shown)
        for member, row in zip(pop.members, rows)))


def _train(run, config, pop, agent, stop):
  """Calls until train.total_env_steps or a stop request; the last evaluation's rows (or None)."""
  total, results, interval = config.train.total_env_steps, None, agent_state.Interval(pop.size)
  while agent.env_steps < total and not stop.requested:
    before = agent.call(interval)
    after = agent.env_steps
    run.bar.update(after - before)
    if lifecycle.crossed(before, after, config.train.log_every_steps) or after >= total:
      _log_interval(run, pop, interval, after, total)
      interval = agent_state.Interval(pop.size)
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
  pop = agent_state.Population(config, run.workdir)
  run.write_config({"observation_size": observation_size, "action_size": action_size,
                    "devices": [str(d) for d in jax.devices()],
                    "member_devices": pop.num_devices}, members=pop.member_configs)
  agent = _make_agent(config, pop, run, observation_size, action_size)
  start, total = agent.env_steps, config.train.total_env_steps
  if run.resume:
    run.log(f"Resuming the run in {run.workdir} from env step {start}" +
            (f" ({int(jnp.sum(agent.buffer.count))} transitions in the replay buffer)." if start
             else " (no checkpoint yet)."))
  run.log(f"{config.env.name}, reward {pop.describe(config)}: training to {total} env steps on "
          f"{jax.default_backend()}; workdir {run.workdir}.")
  run.start(start, total, dirs=pop.dirs, description="env steps", unit="env step")
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
