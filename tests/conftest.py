"""Shared fixtures: small embedded LIBERO-schema datasets generated once per test session."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rrd_jax import config_utils  # noqa: E402
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
