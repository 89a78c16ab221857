"""How the training loop advances: one streamed (or host-cached) batch per call, or many steps per
call on a device-resident frame table (config.data.cache; rrd_jax/data/cache.py)."""

import time

import jax

from rrd_jax import parallel
from rrd_jax.augment import Augmentation
from rrd_jax import step as step_lib
from rrd_jax.data import cache, pipeline
from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.errors import UserError


class BatchStepper:
  """Feeds host batches (tf.data stream or host cache) to the jitted train step, one per call."""

  def __init__(self, batches, train_step, mesh):
    self.batches = batches
    self.train_step = train_step
    self.sharding = parallel.batch_sharding(mesh)

  def advance(self, state, step, max_steps):
    """Runs step `step` (0-based batch index); returns (state, metrics, steps run, data wait s)."""
    del step, max_steps
    wait_start = time.perf_counter()
    with jax.profiler.TraceAnnotation("data_wait"):
      batch = next(self.batches)
    data_wait = time.perf_counter() - wait_start
    with jax.profiler.TraceAnnotation("compute"):
      state, metrics = self.train_step(state, parallel.to_global(batch, self.sharding))
    return state, metrics, 1, data_wait


class DeviceStepper:
  """Runs up to `max_steps` steps per call on the device frame table (no host work per step)."""

  def __init__(self, device_cache, cached_fn):
    self.cache = device_cache
    self.fn = cached_fn

  def advance(self, state, step, max_steps):
    state, metrics = self.fn(state, self.cache.table, self.cache.probabilities, step, max_steps)
    return state, metrics, max_steps, 0.0


def make_stepper(config, data, mesh, start_step, log=print):
  """The stepper for config.data.cache ("none", "host" or "device") over data.train_ids
  (reward_setup.TrainingData), from `start_step` to train.num_steps."""
  kind, loader, train_ids = config.data.cache, data.loader, data.train_ids
  num_steps = max(0, config.train.num_steps - start_step)
  options = SamplerOptions.from_config(config, config.seed)
  input_keys = loader.inputs.keys
  augmentation = Augmentation.from_config(config)
  train_step = step_lib.make_train_step(input_keys, config.rrd, mesh, augmentation)
  if kind == "none":
    batches = pipeline.train_batches(
        loader, train_ids, options, start_step=start_step, num_steps=num_steps,
        num_parallel_calls=config.data.num_parallel_calls, process_index=jax.process_index(),
        process_count=jax.process_count())
    return BatchStepper(batches, train_step, mesh)
  if jax.process_count() > 1:
    raise UserError(f"data.cache={kind} supports single-process jobs; use data.cache=none with "
                    f"{jax.process_count()} processes")
  log(f"Caching the {len(train_ids)} training episodes' frames in {kind} memory "
      f"({cache.table_bytes(loader, train_ids) / 2**30:.2f} GiB) ...")
  table = cache.build_table(loader, train_ids)
  component_ids = loader.component_ids[train_ids]
  if kind == "host":
    host = cache.HostCache(table, loader.inputs, options, component_ids=component_ids)
    return BatchStepper(host.batches(start_step, num_steps), train_step, mesh)
  device_cache = cache.DeviceCache(table, loader.inputs, options, component_ids=component_ids,
                                   sharding=parallel.replicated(mesh))
  return DeviceStepper(device_cache, step_lib.make_cached_train_fn(
      input_keys, config.rrd, mesh, device_cache, augmentation))
