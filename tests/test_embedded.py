"""The embedded dataset is built once even when several processes or threads ask for it at the
same moment (a benchmark's configs side by side, local multi-process launches)."""

import concurrent.futures
import os

import tensorflow_datasets as tfds

from rrd_jax.data import embedded

TINY = embedded.EmbeddedParams(num_episodes=6, min_length=5, max_length=8, image_size=16,
                               num_shards=2)


def test_concurrent_builds_of_one_dataset_share_one_copy(tmp_path):
  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    dirs = list(pool.map(lambda _: embedded.build_embedded_dataset(str(tmp_path), TINY), range(3)))
  assert len(set(dirs)) == 1
  builder = tfds.builder_from_directory(dirs[0])
  assert builder.info.splits["train"].num_examples == TINY.num_episodes
  # no half-written copies left beside the finished one
  assert os.listdir(os.path.dirname(dirs[0])) == [embedded.DATASET_VERSION]
