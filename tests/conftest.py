"""Shared fixtures: small embedded LIBERO-schema datasets generated once per test session."""

import pytest

from rrd_jax.data import embedded
from tests.helpers import ROOT

TINY = embedded.EmbeddedParams(num_episodes=16, min_length=6, max_length=14, image_size=40,
                               seed=1, num_shards=3)


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
  """16 episodes of 6..14 steps, 40x40 JPEG images, in 3 TFRecord shards."""
  return embedded.build_embedded_dataset(str(tmp_path_factory.mktemp("embedded")), TINY)


@pytest.fixture(scope="session")
def repo_root():
  return ROOT
