"""Train an RRD reward model: python -m rrd_jax.train --config configs/libero_rrd.py --workdir DIR.

Override any config field with --config.FIELD=VALUE (see configs/libero_rrd.py for the fields).
Writes WORKDIR/config.json (resolved config), metrics.jsonl, tensorboard/ and checkpoints/.
"""

import functools
import json
import os
import sys
import time

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from rrd_jax import (checkpoint, config_utils, interrupt, metrics, models, parallel, plots, profiling,
                     run_dir)
from rrd_jax import step as step_lib
from rrd_jax.data import returns
from rrd_jax.errors import UserError, exit_with_error, run_app, unknown_config_field_message


def _mean_metrics(metric_list):
  """Mean of metric dicts, or of (metrics, weight) pairs (a call's mean over its steps)."""
  pairs = [m if isinstance(m, tuple) else (m, 1) for m in metric_list]
  fetched = jax.device_get([m for m, _ in pairs])
  weights = np.asarray([w for _, w in pairs], np.float64)
  return {k: float(np.average([m[k] for m in fetched], weights=weights)) for k in fetched[0]}


def sampler_options(config, seed):
  """RRDSampler options of a training config (mixture weights, negatives), seeded with `seed`."""
  mixture = config.data.get("mixture") or {}
  return dict(episodes_per_batch=config.rrd.episodes_per_batch, sample_size=config.rrd.sample_size,
              seed=seed, weighting=config.data.episode_weighting,
              component_weights=[float(c.weight) for c in mixture.values()] or None,
              negatives_ratio=config.returns.negatives_ratio)


def evaluate(state, eval_step, predict_fn, loader, eval_ids, config, mesh):
  """Held-out metrics: the RRD loss on fixed sampled batches, whole-episode reward recovery and
  the ROC-AUC of predicted returns: success vs failure (when both occur among the predicted
  episodes) and own vs another task's instruction (instruction-conditioned models).

  Returns (metrics, (predicted, dataset) per-step rewards of the fully predicted episodes).
  """
  # The dataset modules need tensorflow, which the online path (rrd_jax.rl) runs without.
  from rrd_jax import evaluation  # pylint: disable=import-outside-toplevel
  from rrd_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  results, episode_rewards = {}, ([], [])
  dataset = pipeline.train_dataset(loader, eval_ids,
                                   sampler_kwargs=sampler_options(config, config.seed + 1),
                                   num_steps=config.train.eval_batches,
                                   negative_return=config.returns.negative_return, **_process_args())
  batch_sharding = parallel.batch_sharding(mesh)
  eval_metrics = [eval_step(state, parallel.to_global(b, batch_sharding))
                  for b in dataset.as_numpy_iterator()]
  results.update({f"eval/{k}": v for k, v in _mean_metrics(eval_metrics).items()})
  episodes = eval_ids[: config.train.eval_episodes]
  if not len(episodes):
    return results, episode_rewards
  predict = functools.partial(evaluation.predict_episodes, predict_fn, state.params, loader,
                              episodes, batch_size=config.train.predict_batch_size,
                              sharding=batch_sharding)
  episode_rewards = predict()
  targets = loader.targets
  stats = evaluation.reward_statistics(*episode_rewards, targets.returns[episodes])
  results.update({f"eval/{k}": v for k, v in stats.items() if k not in ("episodes", "steps")})
  predicted_returns = np.asarray([p.sum() for p in episode_rewards[0]])
  success = targets.success[episodes]
  if success.any() and not success.all():
    results["eval/success_auc"] = evaluation.roc_auc(predicted_returns[success],
                                                     predicted_returns[~success])
  candidates = np.unique(loader.instruction_ids[loader.instruction_ids > 0])
  if config.model.use_instruction and len(candidates) >= 2:
    other = returns.mismatched_instructions(np.random.default_rng(config.seed),
                                            loader.instruction_ids[episodes], candidates)
    mismatched = np.asarray([p.sum() for p in predict(instruction_ids=other)[0]])
    results["eval/instruction_auc"] = evaluation.roc_auc(predicted_returns, mismatched)
  return results, episode_rewards


def _process_args():
  """Each process loads its own slice of every global batch."""
  return {"process_index": jax.process_index(), "process_count": jax.process_count()}


def _checkpoint_meta(config, step):
  return {"sampler": {"seed": config.seed, "next_step": int(step)},
          "config": json.loads(config.to_json_best_effort())}


def train_and_evaluate(config, workdir, log=print):
  """Trains per `config`, writing everything to `workdir`; returns the final held-out metrics.

  Rerunning with the same config and workdir resumes from the latest checkpoint; the result is
  bitwise the same as an uninterrupted run (the batch at step s depends only on (seed, s)).
  """
  # The dataset modules need tensorflow, which the online path (rrd_jax.rl) runs without.
  from rrd_jax import steppers  # pylint: disable=import-outside-toplevel
  from rrd_jax.data import pipeline, rlds, source  # pylint: disable=import-outside-toplevel
  config_utils.validate(config)
  main_process = parallel.is_main_process()
  if not main_process:
    log = lambda *_: None  # noqa: E731  (process 0 speaks for the job)
  workdir, resume = run_dir.prepare(workdir, config, log=log, decide=main_process)
  resume = bool(parallel.broadcast_from_main(resume))
  if main_process:  # process 0 generates embedded datasets (once) while the others wait
    source.resolve_components(config, log=log)
  parallel.broadcast_from_main(0)
  data = source.open_source(config, source.resolve_components(config, log=log), log=log)
  index = data.index
  holdout = rlds.holdout_mask(index.file_paths, config.data.eval_fraction)
  train_ids = np.flatnonzero(~holdout)
  eval_ids = np.flatnonzero(holdout) if config.data.eval_fraction > 0 else np.zeros(0, np.int64)
  vocab = source.instruction_vocabulary([index.instructions[i] for i in train_ids])
  loader = pipeline.EpisodeLoader(data.builder, index, data.keys, pipeline.Inputs.from_config(config),
                                  instruction_vocab=vocab, targets=data.targets,
                                  component_ids=data.component_ids)
  if config.returns.negatives_ratio > 0 and len(vocab) < 3:
    raise UserError(f"returns.negatives_ratio={config.returns.negatives_ratio} needs training "
                    f"episodes with at least 2 different instructions; found {len(vocab) - 1}")
  checkpoint_dir = os.path.abspath(os.path.expanduser(config.checkpoint.dir or
                                                      os.path.join(workdir, "checkpoints")))
  try:
    mesh = parallel.make_mesh(config.mesh.data)
  except ValueError as e:
    raise UserError(str(e)) from None
  num_devices = mesh.devices.size
  if config.rrd.episodes_per_batch % num_devices or config.train.predict_batch_size % num_devices:
    raise UserError(f"rrd.episodes_per_batch ({config.rrd.episodes_per_batch}) and "
                    f"train.predict_batch_size ({config.train.predict_batch_size}) must be "
                    f"multiples of the device count ({num_devices})")
  summary = data.summary()
  summary.update(train_episodes=int(len(train_ids)), eval_episodes=int(len(eval_ids)))
  if main_process:
    config_utils.write_run_config(os.path.join(workdir, "config.json"), config, {
        "dataset": summary, "instruction_vocabulary": vocab, "checkpoint_dir": checkpoint_dir,
        "components": [c.record() for c in data.components],
        "devices": [str(d) for d in mesh.devices.flat], "processes": jax.process_count()})
  log(f"Dataset {index.dataset_dir}: {summary['episodes']} episodes, {summary['steps']} steps "
      f"({len(train_ids)} train / {len(eval_ids)} held-out episodes); "
      f"training {config.train.num_steps} steps on {num_devices} {jax.default_backend()} device(s).")

  sampler_kwargs = sampler_options(config, config.seed)
  model = models.build_model(config.model, num_instructions=len(vocab))
  input_keys = models.model_input_keys(config.model)
  example = next(pipeline.train_dataset(loader, train_ids, sampler_kwargs=sampler_kwargs,
                                        num_steps=1).as_numpy_iterator())
  state = step_lib.create_train_state(model, config.optim,
                                      {k: example[k][0] for k in input_keys},
                                      jax.random.PRNGKey(config.seed))
  start_step = 0
  if resume:
    restored = checkpoint.restore(checkpoint_dir, state, "latest")
    if restored is not None:
      state, _ = restored
      start_step = int(jax.device_get(state.step))
    log(f"Resuming the run in {workdir} from step {start_step}" +
        (f" (checkpoint in {checkpoint_dir})." if start_step else " (no checkpoint yet)."))
    if main_process:
      run_dir.truncate_metrics(workdir, start_step)
  state = jax.device_put(state, parallel.replicated(mesh))
  eval_step = step_lib.make_eval_step(input_keys, config.rrd, mesh)
  predict_fn = step_lib.make_predict_fn(model.apply, input_keys, mesh)
  logger = metrics.MetricsLogger(workdir, enabled=main_process)
  checkpointer = checkpoint.Checkpointer(checkpoint_dir, every_steps=config.checkpoint.every_steps,
                                         keep=config.checkpoint.keep,
                                         keep_best=config.checkpoint.keep_best and len(eval_ids) > 0)
  num_steps = config.train.num_steps
  stepper = steppers.make_stepper(config, loader, train_ids, mesh, input_keys, sampler_kwargs,
                                  start_step, _process_args(), log=log)
  boundaries = [b for b in (config.train.log_every, config.train.eval_every,
                            config.checkpoint.every_steps) if b > 0]

  def run_eval(step):
    results, (predicted, true) = evaluate(state, eval_step, predict_fn, loader, eval_ids, config,
                                          mesh)
    logger.write(step, results)
    if predicted and logger.enabled:
      titles = [f"held-out #{e}" for e in eval_ids[:4]]
      logger.write_image(step, "eval/episodes",
                         plots.to_rgb_array(plots.episodes_figure(predicted[:4], true[:4], titles)))
    log(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
    checkpointer.save_if_best(state, _checkpoint_meta(config, step), step, results["eval/loss"])
    return results

  profiler = profiling.StepProfiler(config.profile, os.path.join(workdir, "tensorboard"), log=log)
  pending, last_log, data_wait, results = [], time.perf_counter(), 0.0, None
  bar = metrics.progress_bar(num_steps, "train", initial=min(start_step, num_steps))
  step = start_step
  # Ctrl-C / SIGTERM stop at the next call boundary and save (one process: several could stop
  # at different steps).
  with interrupt.StopRequests(enabled=jax.process_count() == 1) as stop:
    while step < num_steps and not stop.requested:
      # Calls that run several steps (device cache) end on every log/eval/checkpoint boundary.
      chunk = min([num_steps - step] + [b - step % b for b in boundaries])
      profiler.before_step(step + 1, step + chunk)
      with jax.profiler.StepTraceAnnotation("train", step_num=step + 1):
        state, step_metrics, ran, waited = stepper.advance(state, step, chunk)
      step += ran
      data_wait += waited
      profiler.after_step(step, step_metrics)
      pending.append((step_metrics, ran))
      bar.update(ran)
      if step % config.train.log_every == 0 or step == num_steps:
        steps_logged = sum(n for _, n in pending)
        scalars = {f"train/{k}": v for k, v in _mean_metrics(pending).items()}  # waits for the device
        elapsed = time.perf_counter() - last_log
        scalars.update({"train/steps_per_s": steps_logged / max(elapsed, 1e-9),
                        "train/data_wait_s_per_step": data_wait / steps_logged,
                        "train/compute_s_per_step": (elapsed - data_wait) / steps_logged,
                        "train/data_wait_fraction": data_wait / max(elapsed, 1e-9)})
        pending, last_log, data_wait = [], time.perf_counter(), 0.0
        if not np.isfinite(scalars["train/loss"]):
          raise UserError(f"training diverged: train/loss is {scalars['train/loss']} at step {step}")
        logger.write(step, scalars)
        bar.set_postfix(loss=f"{scalars['train/loss']:.4g}")
        if bar.disable:
          log(f"step {step}/{num_steps}: train/loss={scalars['train/loss']:.4g}")
      if len(eval_ids) and (step % config.train.eval_every == 0 or step == num_steps):
        eval_start = time.perf_counter()
        results = run_eval(step)
        last_log += time.perf_counter() - eval_start  # keep evaluation out of the step timings
      checkpointer.maybe_save(state, _checkpoint_meta(config, step), step)
  if stop.requested and step < num_steps:
    profiler.stop()
    bar.close()
    saving = interrupt.saves_on_stop(config.checkpoint)
    if saving:
      checkpointer.save_final(state, _checkpoint_meta(config, step), step)
    checkpointer.close()
    logger.close()
    raise stop.interrupted(f"step {step}", checkpoint_dir, saving)
  profiler.stop()
  bar.close()
  final_path = os.path.join(workdir, "final_metrics.json")
  if results is None:  # nothing left to train (a finished run resumed) or no held-out episodes
    if os.path.exists(final_path) and start_step >= num_steps:
      with open(final_path, encoding="utf-8") as f:
        results = {k: v for k, v in json.load(f).items() if k != "step"}
    else:
      results = run_eval(num_steps) if len(eval_ids) else {}
  if config.checkpoint.save_final:
    checkpointer.save_final(state, _checkpoint_meta(config, num_steps), num_steps)
  checkpointer.close()
  logger.close()
  if main_process:
    with open(final_path, "w", encoding="utf-8") as f:
      json.dump({"step": num_steps, **results}, f, indent=2)
  log(f"Done. Checkpoints in {checkpoint_dir}; metrics in {workdir}/metrics.jsonl.")
  return results


def main():
  try:  # ml_collections applies --config.FIELD overrides from sys.argv while defining the flag
    config = config_flags.DEFINE_config_file(
        "config", config_utils.DEFAULT_CONFIG_FILE,
        "Training config file, optionally with :VARIANT (default: configs/libero_rrd.py).")
  except (AttributeError, KeyError) as e:
    exit_with_error(unknown_config_field_message(e, sys.argv))
  workdir = flags.DEFINE_string("workdir", None, "Directory for config.json, metrics, checkpoints.")
  coordinator = flags.DEFINE_string(
      "coordinator_address", "", "Multi-process jobs: host:port of process 0 (auto-detected on "
      "SLURM and TPU VMs when omitted).")
  num_processes = flags.DEFINE_integer("num_processes", 1, "Multi-process jobs: process count.")
  process_id = flags.DEFINE_integer("process_id", 0, "Multi-process jobs: this process's index.")

  def run(argv):
    del argv
    if not workdir.value:
      raise UserError("--workdir is required")
    try:
      resolved = config.value
      resolved.get("rrd")  # a config file that failed to load raises here
    except OSError as e:
      raise UserError(f"config file {flags.FLAGS['config'].serialize().split('=', 1)[-1]} "
                      "cannot be loaded (missing or unreadable)") from None
    if "env" in resolved:  # an online-agent config (configs/mujoco_rrd_sac.py)
      from rrd_jax.rl import train_online  # pylint: disable=import-outside-toplevel
      train_online.train_and_evaluate(resolved, workdir.value)
      return
    parallel.initialize_distributed(coordinator.value, num_processes.value, process_id.value)
    train_and_evaluate(resolved, workdir.value)

  run_app(run)


if __name__ == "__main__":
  main()
