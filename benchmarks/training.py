"""The objects training builds, as the benchmarks time them: the tf.data stream of a dataset's
training episodes and the jitted train step on a fresh TrainState (no augmentation). Importing
it needs no TensorFlow (the device machines have none); stream() does."""

import jax

from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.model.losses import LossOptions
from rrd_jax.run import parallel
from rrd_jax.train import step as step_lib


def stream(config, data):
  """Numpy batches of data.train_ids (prepare.TrainingData) as training draws them, with
  config.data.num_parallel_calls."""
  from rrd_jax.data import pipeline  # pylint: disable=import-outside-toplevel  (tensorflow)
  return pipeline.train_dataset(
      data.loader, data.train_ids, SamplerOptions.from_config(config, config.seed),
      num_parallel_calls=config.data.num_parallel_calls).as_numpy_iterator()


def train_state(config, data, mesh):
  """A fresh TrainState (seed 0) for data's instructions and input sizes, replicated on mesh."""
  return step_lib.create_train_state(config, len(data.vocab), *data.input_sizes(),
                                     rng=jax.random.PRNGKey(0), sharding=parallel.replicated(mesh))


class HostStep:
  """step(numpy batch) -> metrics: the jitted train step (make_train_step) on self.state, the
  batch placed on the mesh as train.py's BatchStepper does."""

  def __init__(self, config, data, mesh):
    self.state = train_state(config, data, mesh)
    self.loss_options = LossOptions.from_config(config.rrd)
    self.train_step = step_lib.make_train_step(data.loader.inputs.keys, self.loss_options, mesh)
    self.sharding = parallel.batch_sharding(mesh)

  def __call__(self, batch):
    self.state, metrics = self.train_step(self.state, parallel.to_global(batch, self.sharding))
    return metrics
