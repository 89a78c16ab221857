"""The reward model's setup, one way for every user: the training loop, predict and relabel, the
benchmarks and the tests.

- `open_training_data(config)`: the configured dataset(s) opened and indexed, the held-out split,
  the instruction vocabulary of the training episodes and the EpisodeLoader;
- `input_sizes(builder, keys)`: the state and action sizes a dataset's features give;
- `restore_run_state(workdir)`: a trained run's TrainState from one of its checkpoints.
"""

import dataclasses
import os

import jax
import numpy as np

from rrd_jax.config import loading
from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import pipeline, returns, rlds, source
from rrd_jax.run import checkpoint, lifecycle, parallel
from rrd_jax.train import step as step_lib
from rrd_jax.util.errors import UserError


@dataclasses.dataclass
class TrainingData:
  source: source.Source  # the opened dataset(s): builder, index, keys, components, targets
  loader: pipeline.EpisodeLoader
  train_ids: np.ndarray  # [N_train] episode ids
  eval_ids: np.ndarray  # [N_eval] held-out episode ids (by file-path hash)
  vocab: list  # instruction vocabulary of the training episodes; 0 = unknown

  @property
  def index(self):
    return self.source.index

  def input_sizes(self):
    return input_sizes(self.source.builder, self.source.keys)

  def input_statistics(self):
    """Mean and std of s, a and s - s' over the training episodes (model.normalize_inputs)."""
    return rlds.input_statistics(self.index, self.train_ids)

  def summary(self):
    summary = self.source.summary()
    summary.update(train_episodes=int(len(self.train_ids)), eval_episodes=int(len(self.eval_ids)))
    return summary


def input_sizes(builder, keys):
  """(state size, action size) of a dataset's proprio and action step features."""
  specs = rlds.serialized_specs(builder, [keys.proprio, keys.action])
  return tuple(int(np.prod(specs["steps/" + k].shape[1:], dtype=np.int64))
               for k in (keys.proprio, keys.action))


def open_training_data(config, log=print):
  """Opens config's dataset(s) (process 0 generates an embedded one first, the others wait) and
  splits them into training and held-out episodes."""
  if parallel.is_main_process():
    source.resolve_components(config, log=log)
  parallel.broadcast_from_main(0)
  data = source.open_source(config, source.resolve_components(config, log=log), log=log)
  index = data.index
  holdout = rlds.holdout_mask(index.file_paths, config.data.eval_fraction)
  train_ids = np.flatnonzero(~holdout)
  eval_ids = np.flatnonzero(holdout) if config.data.eval_fraction > 0 else np.zeros(0, np.int64)
  vocab = source.instruction_vocabulary([index.instructions[i] for i in train_ids])
  target_returns = data.targets.returns[train_ids]
  if config.returns.negatives_ratio == 0 and returns.returns_are_constant(target_returns):
    log(f"WARNING: every training episode has the same return ({target_returns[0]:.6g}, as "
        "defined by config.returns), so return decomposition has nothing to learn from; "
        f"{returns.CONSTANT_RETURN_REMEDY}; for demos whose reward field is 0, add "
        "config.returns.success=all.")
  if config.returns.negatives_ratio > 0 and len(vocab) < 3:
    raise UserError(f"returns.negatives_ratio={config.returns.negatives_ratio} needs training "
                    f"episodes with at least 2 different instructions; found {len(vocab) - 1}")
  loader = pipeline.EpisodeLoader(data.builder, index, data.keys, ModelInputs.from_config(config),
                                  instruction_vocab=vocab, targets=data.targets,
                                  component_ids=data.component_ids)
  return TrainingData(data, loader, train_ids, eval_ids, vocab)


def restore_run_state(workdir, which="latest", sharding=None):
  """(TrainState, checkpoint meta) of a trained run's checkpoint ("latest", "best" or a step),
  built from its config.json alone (the input sizes it recorded, else its dataset's features).
  UserError when the run has no such checkpoint."""
  config, facts = loading.read_run_config(workdir)
  sizes = facts.get("input_sizes")
  if sizes:
    state_size, action_size = sizes["state"], sizes["action"]
  else:  # runs from before input_sizes was recorded
    builder = rlds.open_builder(facts["dataset"]["dataset_dir"])
    state_size, action_size = input_sizes(builder, rlds.FeatureKeys.from_config(config.data))
  vocab = facts.get("instruction_vocabulary") or [source.UNKNOWN_INSTRUCTION]
  state = step_lib.create_train_state(config, len(vocab), state_size, action_size,
                                      rng=jax.random.PRNGKey(0), sharding=sharding)
  checkpoint_dir = lifecycle.checkpoint_dir(workdir, facts["checkpoint_dir"])
  if not os.path.isdir(checkpoint_dir):
    raise UserError(f"run {workdir} has no checkpoint directory {checkpoint_dir}")
  restored = checkpoint.restore_train_state(checkpoint_dir, state, which)
  if restored is None:
    raise UserError(f"no {which} checkpoint found in {checkpoint_dir}")
  return restored
