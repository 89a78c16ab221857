"""From a config to an opened, indexed dataset (or mixture of datasets) with its return definition.

One dataset: config.data.dataset_dir ("" = the embedded dataset, generated once) with
config.returns. A mixture: config.data.mixture holds named components (configs/libero_rrd.py
`mixture_component`), each a dataset with a sampling weight and its own return definition; their
indexes are concatenated (episode ids follow component order) and must share the step features the
model reads.
"""

import dataclasses
import os

import numpy as np

from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import embedded, returns, rlds
from rrd_jax.util.errors import UserError

UNKNOWN_INSTRUCTION = "<unk>"


@dataclasses.dataclass(frozen=True)
class Component:
  name: str
  dataset_dir: str  # "" until resolved: then the RLDS version directory
  weight: float
  returns_kind: str
  time_penalty: float
  embedded: embedded.EmbeddedParams  # used when no dataset_dir is configured
  success: str = "reward"  # "reward": success = return > 0; "all": every episode (returns.py)

  def record(self):
    """What a run's config.json keeps of it (predict applies the same return definition)."""
    return {"name": self.name, "dataset_dir": self.dataset_dir, "weight": self.weight,
            "returns_kind": self.returns_kind, "time_penalty": self.time_penalty,
            "success": self.success}


@dataclasses.dataclass
class Source:
  builder: object  # tfds builder of the first component (feature specs)
  index: rlds.EpisodeIndex  # all components' episodes
  keys: rlds.FeatureKeys
  components: list  # [Component] with resolved dataset_dir
  component_ids: np.ndarray  # [N] int32
  targets: returns.Targets

  def summary(self):
    summary = rlds.dataset_summary(self.index)
    summary["skipped"] = self.index.report.describe()
    summary["skipped_episodes"] = dataclasses.asdict(self.index.report)
    if len(self.components) > 1:
      summary["mixture"] = {
          c.name: {**{k: v for k, v in c.record().items() if k != "name"},
                   "episodes": int(np.sum(self.component_ids == i))}
          for i, c in enumerate(self.components)}
    return summary


def _embedded_params(data_config, episodes, success_rate, seed):
  return embedded.EmbeddedParams(
      num_episodes=episodes, min_length=data_config.embedded_min_length,
      max_length=data_config.embedded_max_length, image_size=data_config.embedded_image_size,
      task=data_config.embedded_task, success_rate=success_rate, seed=seed,
      block_in_state=data_config.embedded_block_in_state)


def components(config):
  """The configured datasets as Components (dataset_dir not yet resolved when embedded)."""
  data = config.data
  if not data.mixture:
    return [Component("data", data.dataset_dir, 1.0, config.returns.kind,
                      config.returns.time_penalty,
                      _embedded_params(data, data.embedded_episodes, data.embedded_success_rate, 0),
                      config.returns.success)]
  return [Component(name, c.dataset_dir, float(c.weight), c.returns_kind, float(c.time_penalty),
                    _embedded_params(data, c.embedded_episodes, c.embedded_success_rate,
                                     c.embedded_seed), c.success)
          for name, c in data.mixture.items()]


def _resolve(component, data_config, log):
  if component.dataset_dir:
    return os.path.abspath(os.path.expanduser(component.dataset_dir))
  params = component.embedded  # its config values are checked by schema.validate_reward_model
  root = os.path.expanduser(data_config.embedded_dir)
  path = os.path.join(root, params.key(), embedded.BUILDER_NAME, embedded.DATASET_VERSION)
  if not os.path.exists(os.path.join(path, "dataset_info.json")):
    log(f"Generating the embedded dataset ({params.num_episodes} episodes, task "
        f"{params.task}) in {path} ...")
  return os.path.abspath(embedded.build_embedded_dataset(root, params))


def resolve_components(config, log=print):
  """Components with their dataset directories (generating embedded datasets as needed)."""
  return [dataclasses.replace(c, dataset_dir=_resolve(c, config.data, log))
          for c in components(config)]


def _check_same_features(builders, keys, names, step_keys):
  reference = rlds.serialized_specs(builders[0], step_keys)
  for builder, name in zip(builders[1:], names[1:]):
    specs = rlds.serialized_specs(builder, step_keys)
    for key, spec in reference.items():
      if repr(specs[key]) != repr(spec):
        raise UserError(f"mixture component {name!r} ({builder.data_dir}) stores '{key}' as "
                        f"{specs[key]}, but component {names[0]!r} as {spec}")


def open_source(config, resolved, log=print):
  """Opens and indexes the resolved components; applies each one's return definition."""
  keys = rlds.FeatureKeys.from_config(config.data)
  skip_bad = bool(config.data.skip_bad_episodes)
  frame_keys = [keys.frame(f) for f in ModelInputs.from_config(config).frames]
  builders = [rlds.open_builder(c.dataset_dir) for c in resolved]
  for builder in builders:
    rlds.check_step_features(builder, keys)
  _check_same_features(builders, keys, [c.name for c in resolved],
                       [keys.proprio, keys.action, keys.reward])
  indexes = [rlds.build_index(b, keys, skip_bad=skip_bad, frame_keys=frame_keys)
             for b in builders]
  for component, index in zip(resolved, indexes):
    if index.report.describe():
      log(f"{component.dataset_dir}: {index.report.describe()}.")
  index = rlds.concatenate(indexes)
  index.report = rlds.IndexReport(*[sum(getattr(i.report, f.name) for i in indexes)
                                    for f in dataclasses.fields(rlds.IndexReport)])
  component_ids = np.concatenate([np.full(len(i), n, np.int32) for n, i in enumerate(indexes)])
  offsets = np.asarray([returns.reward_offset(c.returns_kind, c.time_penalty) for c in resolved],
                       np.float32)[component_ids]
  all_success = np.asarray([c.success == "all" for c in resolved], bool)[component_ids]
  targets = returns.episode_targets(index.returns, index.lengths, offsets, all_success)
  return Source(builders[0], index, keys, resolved, component_ids, targets)


def open_dataset(data_config, dataset_dir, inputs=None):
  """(builder, index, feature keys) of one dataset directory, with its raw returns. inputs: the
  ModelInputs whose frames data.skip_bad_episodes checks."""
  keys = rlds.FeatureKeys.from_config(data_config)
  builder = rlds.open_builder(dataset_dir)
  rlds.check_step_features(builder, keys)
  index = rlds.build_index(builder, keys,
                           skip_bad=bool(data_config.skip_bad_episodes),
                           frame_keys=[keys.frame(f) for f in (inputs.frames if inputs else ())])
  return builder, index, keys


def instruction_vocabulary(instructions):
  """Index 0 is reserved for instructions not seen in training."""
  return [UNKNOWN_INSTRUCTION] + sorted(set(instructions) - {UNKNOWN_INSTRUCTION})
