"""From a config to an opened, indexed dataset (the embedded one when no path is given)."""

import os

from rrd_jax.data import embedded, rlds
from rrd_jax.errors import UserError

UNKNOWN_INSTRUCTION = "<unk>"


def resolve_dataset_dir(data_config, log=print):
  """The RLDS version directory to read; generates the embedded dataset if none is configured."""
  if data_config.dataset_dir:
    return os.path.abspath(os.path.expanduser(data_config.dataset_dir))
  params = embedded.EmbeddedParams(
      num_episodes=data_config.embedded_episodes, min_length=data_config.embedded_min_length,
      max_length=data_config.embedded_max_length, image_size=data_config.embedded_image_size)
  if params.num_episodes < 2 or params.min_length < 2 or params.max_length < params.min_length:
    raise UserError("data.embedded_episodes and data.embedded_min_length must be >= 2 and "
                    "data.embedded_max_length >= data.embedded_min_length")
  root = os.path.expanduser(data_config.embedded_dir)
  path = os.path.join(root, params.key(), embedded.BUILDER_NAME, embedded.DATASET_VERSION)
  if not os.path.exists(os.path.join(path, "dataset_info.json")):
    log(f"Generating the embedded dataset ({params.num_episodes} episodes) in {path} ...")
  return os.path.abspath(embedded.build_embedded_dataset(root, params))


def open_dataset(data_config, dataset_dir):
  """(builder, index, feature keys) for a dataset directory."""
  keys = rlds.FeatureKeys.from_config(data_config)
  builder = rlds.open_builder(dataset_dir)
  index = rlds.build_index(builder, keys)
  return builder, index, keys


def instruction_vocabulary(instructions):
  """Index 0 is reserved for instructions not seen in training."""
  return [UNKNOWN_INSTRUCTION] + sorted(set(instructions) - {UNKNOWN_INSTRUCTION})
