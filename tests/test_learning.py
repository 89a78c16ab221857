"""Learning happens: on the embedded dataset (whose dense reward is known), the RRD reward model
trained from episode returns alone recovers which steps earned the reward on held-out episodes."""

import json
import os

import pytest

from rrd_jax import train
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

