"""Predict per-step rewards for every step of every episode with a trained reward model.

python -m rrd_jax.cli.predict --workdir DIR [--dataset_dir D] --out OUT

Writes to OUT:
  predicted_rewards.npz  flat per-step arrays `episode` (the row in returns.csv), `step`, `reward`,
                         `cumulative_reward` (running sum within the episode), `dataset_reward`;
                         per-episode arrays `episode_length`, `episode_return_true`,
                         `episode_return_pred`, `episode_file_path`, `episode_instruction`
  returns.csv            episode,file_path,length,return_true,return_pred,instruction
  summary.json           return MSE/R^2, within-episode and pooled Pearson vs the dataset reward,
                         per-instruction averages
  plots/                 episodes.png, returns.png, reward_hist.png
"""

import csv
import os

import numpy as np

from rrd_jax.config import loading, schema
from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import pipeline, returns, source
from rrd_jax.infer.reward_model import RewardModel
from rrd_jax.run import checkpoint, lifecycle, parallel
from rrd_jax.train import evaluation, plots, prepare
from rrd_jax.train import step as step_lib
from rrd_jax.util import files
from rrd_jax.util.errors import UserError
from rrd_jax.util.progress import progress_bar


def write_predictions(out_dir, index, predicted, true, true_returns):
  """predicted_rewards.npz (flat per-step arrays + per-episode arrays) and returns.csv.

  true: per-step rewards under the run's return definition; true_returns: their episode returns."""
  episode_ids = np.arange(len(index))
  predicted_returns = np.asarray([p.sum() for p in predicted], np.float64)
  np.savez(os.path.join(out_dir, "predicted_rewards.npz"),
           episode=np.repeat(episode_ids, index.lengths).astype(np.int64),
           step=np.concatenate([np.arange(n) for n in index.lengths]).astype(np.int32),
           reward=np.concatenate(predicted).astype(np.float32),
           cumulative_reward=np.concatenate([np.cumsum(p, dtype=np.float64) for p in predicted]
                                            ).astype(np.float32),
           dataset_reward=np.concatenate(true).astype(np.float32),
           episode_length=index.lengths.astype(np.int64),
           episode_return_true=np.asarray(true_returns, np.float64),
           episode_return_pred=predicted_returns,
           episode_file_path=np.asarray(index.file_paths, dtype=str),
           episode_instruction=np.asarray(index.instructions, dtype=str))
  with files.atomic_open(os.path.join(out_dir, "returns.csv"), newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["episode", "file_path", "length", "return_true", "return_pred", "instruction"])
    for e in episode_ids:
      writer.writerow([e, index.file_paths[e], index.lengths[e], f"{true_returns[e]:.6g}",
                       f"{predicted_returns[e]:.6g}", index.instructions[e]])


def per_instruction_summary(index, predicted, true_returns):
  summary = {}
  for instruction in sorted(set(index.instructions)):
    ids = [e for e, s in enumerate(index.instructions) if s == instruction]
    summary[instruction] = {
        "episodes": len(ids),
        "return_true_mean": float(np.mean(np.asarray(true_returns)[ids])),
        "return_pred_mean": float(np.mean([predicted[e].sum() for e in ids])),
        "reward_pred_mean": float(np.mean(np.concatenate([predicted[e] for e in ids]))),
    }
  return summary


def write_plots(plot_dir, index, predicted, true, true_returns, num_episodes=6):
  """episodes.png (a spread of episodes), returns.png (predicted vs true), reward_hist.png."""
  os.makedirs(plot_dir, exist_ok=True)
  sample = np.unique(np.linspace(0, len(index) - 1, min(num_episodes, len(index))).astype(int))
  titles = [f"#{e} {os.path.basename(index.file_paths[e])}"[:40] for e in sample]
  plots.save(plots.episodes_figure([predicted[e] for e in sample], [true[e] for e in sample],
                                   titles), os.path.join(plot_dir, "episodes.png"))
  plots.save(plots.returns_figure(true_returns, [p.sum() for p in predicted]),
             os.path.join(plot_dir, "returns.png"))
  plots.save(plots.histogram_figure(np.concatenate(predicted)),
             os.path.join(plot_dir, "reward_hist.png"))


def _dataset_and_returns(workdir, config, facts, dataset_dir):
  """The dataset to predict (default: the run's), the per-step reward offset of its return
  definition (a mixture component's own, else the run's config.returns) and whether every episode
  counts as a success (returns.success="all")."""
  components = facts.get("components") or [
      {"name": "data", "dataset_dir": facts["dataset"]["dataset_dir"]}]
  if not dataset_dir and len(components) > 1:
    raise UserError(f"run {workdir} trained on a mixture of {len(components)} datasets "
                    f"({', '.join(c['name'] for c in components)}); pass --dataset_dir to choose one")
  dataset_dir = os.path.abspath(os.path.expanduser(dataset_dir or components[0]["dataset_dir"]))
  match = [c for c in components if c["dataset_dir"] == dataset_dir and "returns_kind" in c]
  if match:
    return (dataset_dir, returns.reward_offset(match[0]["returns_kind"], match[0]["time_penalty"]),
            match[0].get("success", "reward") == "all")
  return (dataset_dir, returns.reward_offset(config.returns.kind, config.returns.time_penalty),
          config.returns.success == "all")


def _default_checkpoint(workdir, facts):
  """"best" (lowest held-out eval/loss) when the run kept one, else "latest"."""
  directory = lifecycle.checkpoint_dir(workdir, facts.get("checkpoint_dir"))
  return "best" if checkpoint.available_steps(directory, "best") else "latest"


class RunPredictor:
  """A trained run's reward model, ready to predict whole episodes of a dataset."""

  def __init__(self, workdir, dataset_dir="", batch_size=0, checkpoint_name=""):
    config, facts = loading.read_run_config(workdir)
    self.which = str(checkpoint_name or _default_checkpoint(workdir, facts))
    if not schema.is_checkpoint_name(self.which):
      raise UserError(f"--checkpoint must be latest, best or a step number, got {self.which!r}")
    self.workdir = os.path.abspath(workdir)
    self.dataset_dir, offset, all_success = _dataset_and_returns(workdir, config, facts,
                                                                 dataset_dir)
    inputs = ModelInputs.from_config(config)
    self.builder, self.index, keys = source.open_dataset(config.data, self.dataset_dir, inputs)
    vocab = facts.get("instruction_vocabulary") or [source.UNKNOWN_INSTRUCTION]
    targets = returns.episode_targets(self.index.returns, self.index.lengths,
                                      np.full(len(self.index), offset, np.float32),
                                      np.full(len(self.index), all_success))
    self.loader = pipeline.EpisodeLoader(self.builder, self.index, keys,
                                         inputs, instruction_vocab=vocab, targets=targets)
    self.mesh = parallel.make_mesh()
    self.batch_size = batch_size or config.train.predict_batch_size
    if self.batch_size % self.mesh.devices.size:
      raise UserError(f"--batch_size {self.batch_size} must be a multiple of the device count "
                      f"({self.mesh.devices.size})")
    trained = facts.get("input_sizes")
    sizes = prepare.input_sizes(self.builder, keys)
    if trained and sizes != (trained["state"], trained["action"]):
      raise UserError(f"dataset {self.dataset_dir} has state/action sizes {sizes}, but run "
                      f"{workdir} was trained on ({trained['state']}, {trained['action']})")
    self.model = RewardModel.load(workdir, self.which, sharding=parallel.replicated(self.mesh))
    self.predict_fn = step_lib.make_predict_fn(self.model.apply, self.loader.inputs.keys,
                                               self.mesh)
    self.step = self.model.step

  def describe(self):
    """Which checkpoint is used, for the log: "the best checkpoint (step 30)"."""
    if self.which in ("best", "latest"):
      return f"the {self.which} checkpoint (step {self.step})"
    return f"the step-{self.step} checkpoint"

  def predict(self, episode_ids, progress=None):
    """(predicted, dataset) per-step rewards, lists of [T_i] arrays in `episode_ids` order."""
    return evaluation.predict_episodes(self.predict_fn, self.model.params, self.loader, episode_ids,
                                       batch_size=self.batch_size,
                                       sharding=parallel.batch_sharding(self.mesh),
                                       progress=progress)


INCOMPLETE = ".incomplete"  # in OUT while predict writes it; removed once everything is written


def _refuse_out_dir(out_dir):
  """--out must be new or empty: never a dataset, another tool's files or a finished output."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise UserError(f"--out {out_dir} exists and is not a directory")
  if not os.path.isdir(out_dir) or not os.listdir(out_dir):
    return
  if os.path.exists(os.path.join(out_dir, "dataset_info.json")):
    raise UserError(f"--out {out_dir} is an RLDS dataset; choose a new --out")
  if os.path.exists(os.path.join(out_dir, INCOMPLETE)):
    raise UserError(f"output directory {out_dir} holds an incomplete prediction (interrupted); "
                    "delete it and rerun the same command, or choose a new --out")
  if os.path.exists(os.path.join(out_dir, "summary.json")):
    raise UserError(f"output directory {out_dir} already holds predictions; choose a new --out")
  raise UserError(f"output directory {out_dir} is not empty; choose a new --out")


def predict_dataset(workdir, out_dir, dataset_dir="", batch_size=0, checkpoint_name="", plot=True,
                    log=print):
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  _refuse_out_dir(out_dir)
  predictor = RunPredictor(workdir, dataset_dir, batch_size, checkpoint_name)
  try:
    os.makedirs(out_dir, exist_ok=True)
    open(os.path.join(out_dir, INCOMPLETE), "w", encoding="utf-8").close()
  except OSError as e:
    raise UserError(f"output directory {out_dir} cannot be created ({e.strerror})") from None
  index = predictor.index
  log(f"Predicting {int(index.lengths.sum())} steps of {len(index)} episodes of "
      f"{predictor.dataset_dir} with {predictor.describe()} of {workdir}.")
  bar = progress_bar(int(index.lengths.sum()), "predict", unit="frame")
  predicted, true = predictor.predict(np.arange(len(index)), progress=bar)
  bar.close()
  true_returns = predictor.loader.targets.returns
  write_predictions(out_dir, index, predicted, true, true_returns)
  stats = evaluation.reward_statistics(predicted, true, true_returns)
  stats["per_instruction"] = per_instruction_summary(index, predicted, true_returns)
  files.write_json(os.path.join(out_dir, "summary.json"), {
      "workdir": predictor.workdir, "dataset_dir": predictor.dataset_dir,
      "checkpoint": predictor.which, "checkpoint_step": predictor.step, **stats})
  if plot:
    write_plots(os.path.join(out_dir, "plots"), index, predicted, true, true_returns)
  os.remove(os.path.join(out_dir, INCOMPLETE))
  stats.pop("per_instruction")
  log(f"Wrote {out_dir}: " + ", ".join(f"{k}={v:.4g}" for k, v in stats.items()))
  return stats
