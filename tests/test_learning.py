"""Learning happens: on the embedded dataset (whose dense reward is known), the RRD reward model
trained from episode returns alone recovers which steps earned the reward on held-out episodes."""

import json
import os

import pytest

from rrd_jax.cli import train
from rrd_jax.data import embedded
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)

LEARNING = embedded.EmbeddedParams(num_episodes=1500, min_length=12, max_length=30, image_size=40,
                                   seed=3, num_shards=4)


@pytest.fixture(scope="module")
def learning_dataset_dir(tmp_path_factory):
  return embedded.build_embedded_dataset(str(tmp_path_factory.mktemp("learning")), LEARNING)


# The same job streamed with tf.data and with the device-resident frame cache (sampling in jit).
@pytest.mark.parametrize("cache", ["none", "device"])
def test_learned_reward_tracks_true_reward_on_held_out_episodes(learning_dataset_dir, cache,
                                                                tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("learning_run") / "w")
  config = tiny_config(learning_dataset_dir, **{
      "data.cache": cache,
      "rrd.sample_size": 8, "rrd.episodes_per_batch": 16, "model.hidden_sizes": (256, 256),
      "train.num_steps": 800, "train.log_every_steps": 50, "eval.every_steps": 400,
      "eval.episodes": 150, "eval.batches": 2, "train.predict_batch_size": 256,
      "data.eval_fraction": 0.1})
  results = train.train_and_evaluate(config, workdir, log=lambda *_: None)

  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert losses[-1] < 0.5 * losses[0], losses
  # Held-out: the model knows which steps earned the return (within-episode correlation), which the
  # uniform redistribution R/T cannot (its within-episode correlation is 0).
  assert results["eval/within_pearson"] >= 0.8, results
  assert results["eval/pooled_pearson"] >= 0.8, results
  assert results["eval/return_r2"] >= 0.5, results



SMALL = embedded.EmbeddedParams(num_episodes=130, min_length=12, max_length=30, image_size=40,
                                seed=3, num_shards=2)


def _held_out_curve(dataset_dir, workdir, augment):
  config = tiny_config(dataset_dir, **{
      "model.augment": augment, "rrd.sample_size": 8, "rrd.episodes_per_batch": 16,
      "model.hidden_sizes": (256, 256), "train.num_steps": 600, "train.log_every_steps": 100,
      "eval.every_steps": 200, "eval.episodes": 64, "eval.batches": 2,
      "data.eval_fraction": 0.25, "train.predict_batch_size": 256, "checkpoint.every_steps": 0})
  train.train_and_evaluate(config, workdir, log=lambda *_: None)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [r for r in map(json.loads, f) if "eval/loss" in r]


def test_on_a_hundred_episodes_the_shift_keeps_the_held_out_figure_rising(tmp_path_factory):
  """About 100 training episodes (33 held out): without augmentation the pixel model memorises
  them (train-episode loss ~60x below the held-out one) and its held-out within-episode Pearson
  stays near its first value; with the DrQ shift the held-out figure rises as training goes on."""
  dataset_dir = embedded.build_embedded_dataset(str(tmp_path_factory.mktemp("small")), SMALL)
  curves = {augment: _held_out_curve(dataset_dir, str(tmp_path_factory.mktemp(augment) / "w"),
                                     augment) for augment in ("none", "shift")}
  pearson = {k: [r["eval/within_pearson"] for r in rows] for k, rows in curves.items()}
  gap = {k: rows[-1]["eval/loss"] / rows[-1]["train_eval/loss"] for k, rows in curves.items()}
  assert [r["step"] for r in curves["shift"]] == [200, 400, 600]
  assert pearson["shift"][-1] >= pearson["shift"][0] + 0.15, pearson  # improves with more steps
  assert min(pearson["shift"][1:]) >= pearson["shift"][0], pearson  # never below where it began
  assert pearson["shift"][-1] >= pearson["none"][-1] + 0.2, pearson
  assert pearson["none"][-1] <= pearson["none"][0] + 0.1, pearson  # no real progress without it
  assert gap["none"] >= 10 and gap["none"] >= 3 * gap["shift"], gap  # memorised vs generalised
