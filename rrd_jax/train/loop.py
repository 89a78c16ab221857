"""The reward-model loop (config.kind = "reward_model"): rrd-train --config configs/libero_rrd.py.

Every step draws an RRD batch (rrd.episodes_per_batch episodes x rrd.sample_size steps; the batch
of step s depends only on (seed, s)) and takes one Adam step on the RRD loss; every
eval.every_steps steps the held-out episodes are scored. The run's lifecycle (workdir, resume,
checkpoints, metrics, progress, stopping, final_metrics.json) is rrd_jax/run/lifecycle.py's.
Writes WORKDIR/config.json, data_stats.json (where the training frames live: data.cache, devices,
processes, episodes/frames/bytes per device, build seconds), metrics.jsonl, tensorboard/,
final_metrics.json and checkpoints/.
"""

import os

import jax
import numpy as np

from rrd_jax.config import schema
from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import pipeline, returns
from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.model import networks
from rrd_jax.model.losses import LossOptions
from rrd_jax.run import checkpoint, lifecycle, parallel, profiling
from rrd_jax.train import evaluation, feeding, plots, prepare
from rrd_jax.train import step as step_lib
from rrd_jax.util import files
from rrd_jax.util.errors import UserError


def _mean_metrics(metric_list):
  """Mean of metric dicts, or of (metrics, weight) pairs (a call's mean over its steps)."""
  pairs = [m if isinstance(m, tuple) else (m, 1) for m in metric_list]
  fetched = jax.device_get([m for m, _ in pairs])
  weights = np.asarray([w for _, w in pairs], np.float64)
  return {k: float(np.average([m[k] for m in fetched], weights=weights)) for k in fetched[0]}


class Evaluator:
  """Held-out metrics (eval/...): the RRD loss on fixed sampled batches, whole-episode reward
  recovery and the ROC-AUC of predicted returns: success vs failure (when both occur among the
  predicted episodes) and own vs another task's instruction (instruction-conditioned models).
  The loss and reward recovery are also measured the same way on a fixed set of training
  episodes (train_eval/...), so that overfitting shows side by side."""

  def __init__(self, config, data, mesh, apply_fn):
    self.config, self.data, self.mesh = config, data, mesh
    keys = ModelInputs.from_config(config).keys
    self.eval_step = step_lib.make_eval_step(keys, LossOptions.from_config(config.rrd), mesh)
    self.predict_fn = step_lib.make_predict_fn(apply_fn, keys, mesh)
    self.sharding = parallel.batch_sharding(mesh)
    self.history, self.warned = [], False  # this run's evaluations (the overfitting warning)

  def _sampled_batches(self, state, episode_ids):
    config = self.config
    batches = pipeline.train_batches(
        self.data.loader, episode_ids, SamplerOptions.from_config(config, config.seed + 1),
        num_steps=config.eval.batches, process_index=jax.process_index(),
        process_count=jax.process_count())
    return _mean_metrics([self.eval_step(state, parallel.to_global(b, self.sharding))
                          for b in batches])

  def _predict(self, params, episodes, instruction_ids=None):
    return evaluation.predict_episodes(
        self.predict_fn, params, self.data.loader, episodes,
        batch_size=self.config.train.predict_batch_size, sharding=self.sharding,
        instruction_ids=instruction_ids)

  def _scores(self, state, episode_ids, prefix):
    """{prefix/metric}: the RRD loss on sampled batches of `episode_ids` and the reward recovery
    of the first eval.episodes of them; plus their (predicted, dataset) per-step rewards."""
    results = {f"{prefix}/{k}": v for k, v in self._sampled_batches(state, episode_ids).items()}
    episodes = episode_ids[: self.config.eval.episodes]
    if not len(episodes):
      return results, ([], [])
    predicted, true = self._predict(state.params, episodes)
    stats = evaluation.reward_statistics(predicted, true,
                                         self.data.loader.targets.returns[episodes])
    results.update({f"{prefix}/{k}": v for k, v in stats.items() if k not in ("episodes", "steps")})
    return results, (predicted, true)

  def __call__(self, state):
    """(metrics, (predicted, dataset) per-step rewards of the fully predicted held-out episodes)."""
    results, (predicted, true) = self._scores(state, self.data.eval_ids, "eval")
    results.update(self._scores(state, self.data.train_ids[: len(self.data.eval_ids)],
                                "train_eval")[0])
    loader, episodes = self.data.loader, self.data.eval_ids[: self.config.eval.episodes]
    if not len(episodes):
      return results, ([], [])
    predicted_returns = np.asarray([p.sum() for p in predicted])
    success = loader.targets.success[episodes]
    if success.any() and not success.all():
      results["eval/success_auc"] = evaluation.roc_auc(predicted_returns[success],
                                                       predicted_returns[~success])
    candidates = np.unique(loader.instruction_ids[loader.instruction_ids > 0])
    if self.config.model.use_instruction and len(candidates) >= 2:
      other = returns.mismatched_instructions(np.random.default_rng(self.config.seed),
                                              loader.instruction_ids[episodes], candidates)
      mismatched = np.asarray([p.sum() for p in self._predict(state.params, episodes, other)[0]])
      results["eval/instruction_auc"] = evaluation.roc_auc(predicted_returns, mismatched)
    return results, (predicted, true)


class _Interval:
  """Training metrics and data-wait time accumulated between two logs."""

  def __init__(self):
    self.pending, self.data_wait = [], 0.0

  def add(self, step_metrics, ran, waited):
    self.pending.append((step_metrics, ran))
    self.data_wait += waited

  def scalars(self, elapsed):
    steps = sum(n for _, n in self.pending)
    scalars = {f"train/{k}": v for k, v in _mean_metrics(self.pending).items()}  # waits
    scalars.update({"train/steps_per_s": steps / elapsed,
                    "train/data_wait_s_per_step": self.data_wait / steps,
                    "train/compute_s_per_step": (elapsed - self.data_wait) / steps,
                    "train/data_wait_fraction": self.data_wait / elapsed})
    return scalars


def _make_mesh(config):
  try:
    mesh = parallel.make_mesh(config.mesh.data)
  except ValueError as e:
    raise UserError(str(e)) from None
  devices = mesh.devices.size
  if config.rrd.episodes_per_batch % devices or config.train.predict_batch_size % devices:
    raise UserError(f"rrd.episodes_per_batch ({config.rrd.episodes_per_batch}) and "
                    f"train.predict_batch_size ({config.train.predict_batch_size}) must be "
                    f"multiples of the device count ({devices})")
  return mesh


def _check_batch_fits(config, mesh):
  """Refuses, before any data is read, a batch whose estimated activations exceed a device."""
  steps = config.rrd.episodes_per_batch * config.rrd.sample_size // mesh.devices.size
  needed = steps * networks.activation_bytes_per_step(config.model, config.data.image_size)
  available = parallel.available_bytes(jax.local_devices()[0])
  if available is not None and needed > available:
    raise UserError(
        f"a batch of rrd.episodes_per_batch={config.rrd.episodes_per_batch} x "
        f"rrd.sample_size={config.rrd.sample_size} steps needs about {needed / 2**30:.1f} GiB of "
        f"activations per device (estimate), more than the {available / 2**30:.1f} GiB available; "
        "lower rrd.sample_size, rrd.episodes_per_batch or data.image_size, or use more devices")


def _setup(run, config, mesh):
  """(data, restored TrainState, first step, device-cache plan) of a new or resumed run."""
  data = prepare.open_training_data(config, log=run.log)
  cache_plan = feeding.plan_device_cache(config, data, mesh)  # refused before config.json
  summary, (state_size, action_size) = data.summary(), data.input_sizes()
  run.write_config({"dataset": summary, "instruction_vocabulary": data.vocab,
                    "input_sizes": {"state": state_size, "action": action_size},
                    "components": [c.record() for c in data.source.components],
                    "devices": [str(d) for d in mesh.devices.flat],
                    "processes": jax.process_count()})
  run.log(f"Dataset {data.index.dataset_dir}: {summary['episodes']} episodes, {summary['steps']} "
          f"steps ({len(data.train_ids)} train / {len(data.eval_ids)} held-out episodes); "
          f"training {config.train.num_steps} steps on {mesh.devices.size} "
          f"{jax.default_backend()} device(s).")
  state = step_lib.create_train_state(config, len(data.vocab), state_size, action_size,
                                      sharding=parallel.replicated(mesh),
                                      input_stats=data.input_statistics())
  items, meta = run.restore(checkpoint.train_state_items(state), keep=config.checkpoint.keep,
                            keep_best=config.checkpoint.keep_best and len(data.eval_ids) > 0)
  state = state.replace(**items["state"])
  start_step = int(jax.device_get(state.step))
  if run.resume:
    run.log(f"Resuming the run in {run.workdir} from step {start_step}" +
            (f" (checkpoint in {run.checkpoint_dir})." if meta else " (no checkpoint yet)."))
  return data, state, start_step, cache_plan


def _meta(run, config, step):
  return run.meta(sampler={"seed": config.seed, "next_step": int(step)})


def _log_train(run, step, scalars):
  lifecycle.check_finite(scalars, ["train/loss"], f"step {step}")
  run.loggers[0].write(step, scalars)
  run.bar.set_postfix(loss=f"{scalars['train/loss']:.4g}")
  if run.quiet():
    run.log(f"step {step}/{run.config.train.num_steps} ({run.progress_text(step)}): "
            f"train/loss={scalars['train/loss']:.4g}")


def _evaluate(run, evaluator, state, step):
  """Held-out metrics at `step`: logged (with a warning when the model overfits), plotted to
  TensorBoard, and the best checkpoint kept."""
  with run.clock.excluded():  # keep evaluation out of the step timings
    results, (predicted, true) = evaluator(state)
    run.loggers[0].write(step, results)
    evaluator.history.append(results)
    warning = evaluation.overfitting_warning(evaluator.history)
    if warning and not evaluator.warned:
      evaluator.warned = True
      run.log(warning)
    if predicted and run.main:
      titles = [f"held-out #{e}" for e in evaluator.data.eval_ids[:4]]
      run.loggers[0].write_image(step, "eval/episodes", plots.to_rgb_array(
          plots.episodes_figure(predicted[:4], true[:4], titles)))
    run.log(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
    run.save_best(step, checkpoint.train_state_items(state), _meta(run, run.config, step),
                  results["eval/loss"])
  return results


def _train(run, stepper, evaluator, state, step, stop, profiler):
  """Steps until train.num_steps or a stop request: (state, step reached, last eval results)."""
  config, results, interval = run.config, None, _Interval()
  num_steps = config.train.num_steps
  log_every, eval_every = config.train.log_every_steps, config.eval.every_steps
  boundaries = [b for b in (log_every, eval_every, config.checkpoint.every_steps) if b > 0]
  while step < num_steps and not stop.requested:
    # Calls that run several steps (device cache) end on every log/eval/checkpoint boundary.
    before, chunk = step, min([num_steps - step] + [b - step % b for b in boundaries])
    profiler.before_step(step + 1, step + chunk)
    with jax.profiler.StepTraceAnnotation("train", step_num=step + 1):
      state, step_metrics, ran, waited = stepper.advance(state, step, chunk)
    step += ran
    profiler.after_step(step, step_metrics)
    interval.add(step_metrics, ran, waited)
    run.bar.update(ran)
    if lifecycle.crossed(before, step, log_every) or step == num_steps:
      _log_train(run, step, interval.scalars(run.clock.elapsed()))
      interval = _Interval()
      run.clock.reset()
    if len(evaluator.data.eval_ids) and (lifecycle.crossed(before, step, eval_every)
                                         or step == num_steps):
      results = _evaluate(run, evaluator, state, step)
    if lifecycle.crossed(before, step, config.checkpoint.every_steps):
      run.save(step, checkpoint.train_state_items(state), _meta(run, config, step))
  return state, step, results


def train_and_evaluate(config, workdir, log=print):
  """Trains per `config`, writing everything to `workdir`; returns the final held-out metrics.

  Rerunning with the same config and workdir resumes from the latest checkpoint; the result is
  bitwise the same as an uninterrupted run (the batch at step s depends only on (seed, s)).
  """
  schema.validate_reward_model(config)
  mesh = _make_mesh(config)
  _check_batch_fits(config, mesh)
  with lifecycle.Run(config, workdir, log=log) as run:
    return _run(run, config, mesh)


def _run(run, config, mesh):
  """Setup, the steps, then the final evaluation and save: the final held-out metrics."""
  data, state, start_step, cache_plan = _setup(run, config, mesh)
  num_steps = config.train.num_steps
  evaluator = Evaluator(config, data, mesh, state.apply_fn)
  stepper, data_stats = feeding.make_stepper(config, data, mesh, start_step, cache_plan,
                                                 log=run.log)
  if parallel.is_main_process():
    files.write_json(os.path.join(run.workdir, "data_stats.json"), data_stats)
  profiler = profiling.StepProfiler(config.profile, f"{run.workdir}/tensorboard", log=run.log)
  run.start(start_step, num_steps)
  with run.stop_requests() as stop:
    state, step, results = _train(run, stepper, evaluator, state, start_step, stop, profiler)
  profiler.stop()
  if stop.requested and step < num_steps:
    raise run.stopped(stop, step, checkpoint.train_state_items(state), _meta(run, config, step))
  if results is None:  # nothing left to train (a finished run rerun) or no held-out episodes
    finished = run.finished_results(start_step, num_steps)
    if finished:
      results = {k: v for k, v in finished[0].items() if k != "step"}
    else:
      results = _evaluate(run, evaluator, state, num_steps) if len(data.eval_ids) else {}
  run.finish(num_steps, checkpoint.train_state_items(state), _meta(run, config, num_steps),
             [{"step": num_steps, **results}])
  side_by_side = evaluation.side_by_side(results)
  if side_by_side:
    run.log(f"Final {side_by_side}.")
  run.log(f"Done. Checkpoints in {run.checkpoint_dir}; metrics in {run.workdir}/metrics.jsonl.")
  return results

