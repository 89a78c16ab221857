"""The embedded default dataset: a small LIBERO-schema RLDS dataset generated on the fly.

Its episodes (the "touch" task with a known dense reward, the "instructed" LIBERO-like demos) come
from rrd_jax/data/scenes.py. Features, dtypes and shapes follow LIBERO's RLDS layout (see
docs/LIBERO_RLDS.md); the dataset is written with tfds's own builder machinery, so it
opens with tfds.builder_from_directory.
"""

import dataclasses
import fcntl
import os

import numpy as np
import tensorflow_datasets as tfds

from rrd_jax.data import scenes
# The episodes themselves (numpy only) live in scenes.py; the names callers read stay here too.
from rrd_jax.data.scenes import (  # pylint: disable=unused-import
    BUILDER_NAME, DATASET_VERSION, REWARD_DOCS, EmbeddedParams, generate_episode)


def libero_features(image_size, reward_doc="Reward.", state_size=8, layout="libero"):
  """The LIBERO RLDS feature spec (images at `image_size`; a state of state_size > 8 appends
  extra dims after LIBERO's 8); layout "oxe": the Open X-Embodiment style observation."""
  image = lambda doc: tfds.features.Image(shape=(image_size, image_size, 3), dtype=np.uint8,
                                          encoding_format="jpeg", doc=doc)
  scalar = lambda dtype, doc: tfds.features.Scalar(dtype=dtype, doc=doc)
  if layout == "oxe":
    observation = {
        "image_0": image("Main camera RGB observation."),
        "image_1": image("Wrist camera RGB observation."),
        "state": tfds.features.Tensor(shape=(7,), dtype=np.float32, doc="Robot state."),
    }
  else:
    observation = {
        "image": image("Main camera RGB observation."),
        "wrist_image": image("Wrist camera RGB observation."),
        "state": tfds.features.Tensor(
            shape=(state_size,), dtype=np.float32,
            doc="EEF pos (3), axis-angle (3), gripper (2)" +
            (", block (x, y)." if state_size > 8 else ".")),
        "joint_state": tfds.features.Tensor(shape=(7,), dtype=np.float32, doc="Joint angles."),
    }
  return tfds.features.FeaturesDict({
      "steps": tfds.features.Dataset({
          "observation": tfds.features.FeaturesDict(observation),
          "action": tfds.features.Tensor(shape=(7,), dtype=np.float32,
                                         doc="EEF delta (6) and gripper (1)."),
          "discount": scalar(np.float32, "Discount, 1.0 everywhere."),
          "reward": scalar(np.float32, reward_doc),
          "is_first": scalar(np.bool_, "True on the first step."),
          "is_last": scalar(np.bool_, "True on the last step."),
          "is_terminal": scalar(np.bool_, "True on the last step."),
          "language_instruction": tfds.features.Text(doc="Language instruction."),
      }),
      "episode_metadata": tfds.features.FeaturesDict({
          "file_path": tfds.features.Text(doc="Path of the source episode."),
      }),
  })


class RrdSyntheticLibero(tfds.core.GeneratorBasedBuilder):
  """LIBERO-schema RLDS episodes of a 2-D touch-the-block task with a known dense reward."""

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: "Embedded default dataset of rrd_jax."}

  def __init__(self, *, params=EmbeddedParams(), **kwargs):
    self._params = params
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=libero_features(self._params.image_size, reward_doc=REWARD_DOCS[
            "oxe" if self._params.layout == "oxe" else self._params.task],
                                 state_size=10 if self._params.block_in_state else 8,
                                 layout=self._params.layout),
        description=f"{__doc__}\n{scenes.__doc__}",
        metadata=tfds.core.MetadataDict(generator_params=dataclasses.asdict(self._params)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for index in range(self._params.num_episodes):
      yield index, generate_episode(self._params, index)


def build_embedded_dataset(root_dir, params=EmbeddedParams()):
  """Generates the dataset (once) under `root_dir/<params key>/` and returns its version directory."""
  data_dir = os.path.join(os.path.expanduser(root_dir), params.key())
  version_dir = os.path.join(data_dir, BUILDER_NAME, DATASET_VERSION)
  if os.path.exists(os.path.join(version_dir, "dataset_info.json")):
    return version_dir
  # Processes that start together (a benchmark's configs side by side, local multi-process runs)
  # build it once: the first holds the lock while it writes, the others wait and then reuse it.
  os.makedirs(os.path.dirname(data_dir), exist_ok=True)
  with open(data_dir + ".lock", "a", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(os.path.join(version_dir, "dataset_info.json")):
      builder = RrdSyntheticLibero(params=params, data_dir=data_dir)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(num_shards=params.num_shards))
  return version_dir
