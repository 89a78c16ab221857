"""Predict per-step rewards for every step of every episode with a trained reward model.

python -m rrd_jax.predict --workdir DIR [--dataset_dir D] --out OUT

Writes OUT/predicted_rewards.npz (flat arrays `episode`, `step`, `reward`, plus `dataset_reward`;
`episode` is the row in returns.csv), OUT/returns.csv
(episode,file_path,length,return_true,return_pred) and OUT/summary.json.
"""

import csv
import json
import os

import jax
import numpy as np
from absl import flags

from rrd_jax import checkpoint, config_utils, evaluation, models, parallel, step as step_lib
from rrd_jax.data import pipeline, source
from rrd_jax.errors import UserError, run_app
from rrd_jax.metrics import progress_bar


def load_reward_model(workdir, loader, vocab, config, checkpoint_dir, mesh, which="latest"):
  """TrainState restored from one of the run's checkpoints ("latest", "best" or a step)."""
  model = models.build_model(config.model, num_instructions=len(vocab))
  input_keys = models.model_input_keys(config.model)
  example = next(pipeline.episode_steps_dataset(loader, [0], batch_size=1).as_numpy_iterator())
  state = step_lib.create_train_state(model, config.optim, {k: example[k] for k in input_keys},
                                      jax.random.PRNGKey(0))
  if not os.path.isdir(checkpoint_dir):
    raise UserError(f"run {workdir} has no checkpoint directory {checkpoint_dir}")
  restored = checkpoint.restore(checkpoint_dir, state, which)
  if restored is None:
    raise UserError(f"no {which} checkpoint found in {checkpoint_dir}")
  return model, input_keys, jax.device_put(restored[0], parallel.replicated(mesh))


def predict_dataset(workdir, out_dir, dataset_dir="", batch_size=0, checkpoint_name="", log=print):
  config, facts = config_utils.read_run_config(workdir)
  which = str(checkpoint_name or config.checkpoint.get("restore", "latest"))
  if which not in ("latest", "best") and not which.isdigit():
    raise UserError(f"--checkpoint must be latest, best or a step number, got {which!r}")
  dataset_dir = os.path.abspath(os.path.expanduser(dataset_dir or facts["dataset"]["dataset_dir"]))
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  if os.path.exists(os.path.join(out_dir, "returns.csv")):
    raise UserError(f"output directory {out_dir} already holds predictions; choose a new --out")
  builder, index, keys = source.open_dataset(config.data, dataset_dir)
  vocab = facts.get("instruction_vocabulary") or [source.UNKNOWN_INSTRUCTION]
  loader = pipeline.EpisodeLoader(builder, index, keys, pipeline.Inputs.from_config(config),
                                  instruction_vocab=vocab)
  mesh = parallel.make_mesh()
  batch_size = batch_size or config.train.predict_batch_size
  if batch_size % mesh.devices.size:
    raise UserError(f"--batch_size {batch_size} must be a multiple of the device count "
                    f"({mesh.devices.size})")
  model, input_keys, state = load_reward_model(workdir, loader, vocab, config,
                                               facts["checkpoint_dir"], mesh, which)
  predict_fn = step_lib.make_predict_fn(model.apply, input_keys, mesh)
  episode_ids = np.arange(len(index))
  log(f"Predicting {int(index.lengths.sum())} steps of {len(index)} episodes of {dataset_dir} "
      f"with the step-{int(jax.device_get(state.step))} checkpoint of {workdir}.")
  bar = progress_bar(int(index.lengths.sum()), "predict")
  bar.unit = "frame"
  predicted, true = evaluation.predict_episodes(predict_fn, state.params, loader, episode_ids,
                                                batch_size=batch_size,
                                                sharding=parallel.batch_sharding(mesh),
                                                progress=bar)
  bar.close()
  os.makedirs(out_dir, exist_ok=True)
  np.savez(os.path.join(out_dir, "predicted_rewards.npz"),
           episode=np.repeat(episode_ids, index.lengths).astype(np.int64),
           step=np.concatenate([np.arange(n) for n in index.lengths]).astype(np.int32),
           reward=np.concatenate(predicted).astype(np.float32),
           dataset_reward=np.concatenate(true).astype(np.float32))
  with open(os.path.join(out_dir, "returns.csv"), "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["episode", "file_path", "length", "return_true", "return_pred"])
    for e in episode_ids:
      writer.writerow([e, index.file_paths[e], index.lengths[e], f"{index.returns[e]:.6g}",
                       f"{float(predicted[e].sum()):.6g}"])
  stats = evaluation.reward_statistics(predicted, true, index.returns)
  with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"workdir": os.path.abspath(workdir), "dataset_dir": dataset_dir, **stats}, f, indent=2)
  log(f"Wrote {out_dir}: " + ", ".join(f"{k}={v:.4g}" for k, v in stats.items()))
  return stats


def main():
  workdir = flags.DEFINE_string("workdir", None, "Training run directory (holds config.json).")
  dataset_dir = flags.DEFINE_string("dataset_dir", "",
                                    "RLDS dataset to predict on; default: the training dataset.")
  out = flags.DEFINE_string("out", None, "Output directory.")
  batch_size = flags.DEFINE_integer("batch_size", 0,
                                    "Steps per forward pass; 0 = the run's train.predict_batch_size.")
  checkpoint_name = flags.DEFINE_string(
      "checkpoint", "", "latest, best or a step number; default: the run's checkpoint.restore.")

  def run(argv):
    del argv
    if not workdir.value or not out.value:
      raise UserError("--workdir and --out are required")
    predict_dataset(workdir.value, out.value, dataset_dir.value, batch_size.value,
                    checkpoint_name.value)

  run_app(run)


if __name__ == "__main__":
  main()
