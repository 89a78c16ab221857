"""Shared fixtures: small embedded LIBERO-schema datasets generated once per test session."""

import os
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rrd_jax import checkpoint, config_utils, models, step as step_lib  # noqa: E402
from rrd_jax.data import embedded  # noqa: E402

TINY = embedded.EmbeddedParams(num_episodes=16, min_length=6, max_length=14, image_size=40,
                               seed=1, num_shards=3)


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
  """16 episodes of 6..14 steps, 40x40 JPEG images, in 3 TFRecord shards."""
  return embedded.build_embedded_dataset(str(tmp_path_factory.mktemp("embedded")), TINY)


@pytest.fixture(scope="session")
def repo_root():
  return ROOT


def tiny_config(dataset_dir, **overrides):
  """configs/libero_rrd.py sized for fast tests; overrides as {"section.field": value} kwargs."""
  small = {"data.dataset_dir": dataset_dir, "data.image_size": 40, "data.eval_fraction": 0.25,
           "rrd.sample_size": 4, "rrd.episodes_per_batch": 4, "model.hidden_sizes": (32, 32),
           "train.num_steps": 6, "train.log_every": 2, "train.eval_every": 3,
           "train.eval_batches": 1, "train.eval_episodes": 4, "train.predict_batch_size": 16}
  small.update(overrides)
  return config_utils.load_config(overrides=small)


def restore_run_state(workdir, which="latest"):
  """(TrainState, meta) from a run's checkpoint; the example inputs use LIBERO's 8-d state and
  7-d action (the embedded dataset's)."""
  config, facts = config_utils.read_run_config(workdir)
  model = models.build_model(config.model, num_instructions=len(facts["instruction_vocabulary"]))
  size = config.data.image_size
  example = {"state": np.zeros((1, 8), np.float32), "next_state": np.zeros((1, 8), np.float32),
             "action": np.zeros((1, 7), np.float32), "image": np.zeros((1, size, size, 3), np.uint8)}
  state = step_lib.create_train_state(
      model, config.optim, {k: example[k] for k in models.model_input_keys(config.model)},
      jax.random.PRNGKey(0))
  return checkpoint.restore(facts["checkpoint_dir"], state, which)
