"""How the training loop advances: one streamed (or host-cached) batch per call, or many steps per
call on a device-resident frame table (config.data.cache; rrd_jax/data/cache.py)."""

import time

import jax
import numpy as np

from rrd_jax.data import cache, pipeline
from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.model.augment import Augmentation
from rrd_jax.model.losses import LossOptions
from rrd_jax.run import parallel
from rrd_jax.train import step as step_lib
from rrd_jax.util.errors import UserError


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


def _stats(config, mesh, **fields):
  """WORKDIR/data_stats.json: where the training frames live."""
  return {"cache": config.data.cache, "devices": int(mesh.devices.size),
          "processes": jax.process_count(), "episodes_per_device": [], "frames_per_device": [],
          "bytes_per_device": [], "build_seconds": 0.0, **fields}


def _size(num_bytes):
  return f"{num_bytes / 2**30:.2f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.2f} MiB"


def _check_shards_fit(config, loader, plan, mesh):
  """Refuses (before decoding anything) a shard larger than its device's free memory (or than
  data.cache_memory_gib), the smallest over all processes' devices."""
  needed = cache.shard_bytes(loader, plan)
  local = [d for d in mesh.devices.ravel() if d.process_index == jax.process_index()]
  free = [parallel.available_bytes(d) for d in local]
  if any(f is None for f in free):
    free = []
  elif local and local[0].platform == "cpu":  # the devices share the host's RAM
    free = [f // len(local) for f in free]
  limit = float(config.data.cache_memory_gib) * 2**30
  available = min(free + ([limit] if limit > 0 else []), default=None)
  if available is not None and jax.process_count() > 1:
    available = float(np.min(parallel.gather_from_processes(np.float64(available))))
  if available is not None and needed > available:
    raise UserError(
        f"data.cache=device needs {_size(needed)} per device for the largest of its "
        f"{plan.num_shards} shard(s) ({plan.max_frames} frames at {loader.inputs.image_size}x"
        f"{loader.inputs.image_size}), but a device has {_size(available)} available; use "
        "a smaller data.image_size, more devices, or data.cache=none")


def plan_device_cache(config, data, mesh):
  """data.cache=device: how the training episodes split over the mesh's devices (checked to fit,
  before anything is decoded); None for the other caches."""
  if config.data.cache != "device":
    return None
  loader, train_ids = data.loader, data.train_ids
  options = SamplerOptions.from_config(config, config.seed)
  plan = cache.shard_plan(loader, train_ids, options, loader.component_ids[train_ids],
                          int(mesh.devices.size))
  if min(plan.episodes) == 0:
    raise UserError(f"data.cache=device splits the {len(train_ids)} training episodes over "
                    f"{plan.num_shards} devices, and each device needs at least one; use fewer "
                    "devices (mesh.data) or data.cache=none")
  _check_shards_fit(config, loader, plan, mesh)
  return plan


def _device_stepper(config, data, mesh, plan, options, augmentation, log):
  """The DeviceStepper and its data stats: the training episodes split over the mesh's devices."""
  loader, train_ids = data.loader, data.train_ids
  log(f"Caching the {len(train_ids)} training episodes' frames in device memory: "
      f"{plan.num_shards} shard(s) of up to {_size(cache.shard_bytes(loader, plan))} ...")
  if plan.num_shards > 1:
    log(f"Each device draws {config.rrd.episodes_per_batch // plan.num_shards} episodes per batch "
        f"from its own shard; an episode's sampling probability differs from the single-table "
        f"law by at most {plan.law_deviation():.2%}.")
  start = time.perf_counter()
  device_cache = cache.DeviceCache(loader, train_ids, plan, options, mesh)
  jax.block_until_ready(device_cache.table)
  stats = _stats(config, mesh, episodes_per_device=plan.episodes,
                 frames_per_device=plan.frames,
                 bytes_per_device=[cache.shard_bytes(loader, plan)] * plan.num_shards,
                 build_seconds=round(time.perf_counter() - start, 3),
                 sampling_law_max_deviation=plan.law_deviation())
  stepper = DeviceStepper(device_cache, step_lib.make_cached_train_fn(
      loader.inputs.keys, LossOptions.from_config(config.rrd), mesh, device_cache, augmentation))
  return stepper, stats


def make_stepper(config, data, mesh, start_step, plan=None, log=print):
  """(stepper, data stats) for config.data.cache ("none", "host" or "device") over
  data.train_ids (reward_setup.TrainingData), from `start_step` to train.num_steps. plan:
  plan_device_cache's (data.cache=device)."""
  kind, loader, train_ids = config.data.cache, data.loader, data.train_ids
  num_steps = max(0, config.train.num_steps - start_step)
  options = SamplerOptions.from_config(config, config.seed)
  augmentation = Augmentation.from_config(config)
  train_step = step_lib.make_train_step(loader.inputs.keys, LossOptions.from_config(config.rrd),
                                        mesh, augmentation)
  if kind == "none":
    batches = pipeline.train_batches(
        loader, train_ids, options, start_step=start_step, num_steps=num_steps,
        num_parallel_calls=config.data.num_parallel_calls, process_index=jax.process_index(),
        process_count=jax.process_count())
    return BatchStepper(batches, train_step, mesh), _stats(config, mesh)
  if kind == "device":
    return _device_stepper(config, data, mesh, plan or plan_device_cache(config, data, mesh),
                           options, augmentation, log)
  if jax.process_count() > 1:
    raise UserError(f"data.cache=host keeps the frames in one process's memory and supports "
                    f"single-process jobs only; use data.cache=device or data.cache=none with "
                    f"{jax.process_count()} processes")
  log(f"Caching the {len(train_ids)} training episodes' frames in host memory "
      f"({cache.table_bytes(loader, train_ids) / 2**30:.2f} GiB) ...")
  start = time.perf_counter()
  table = cache.build_table(loader, train_ids)
  host = cache.HostCache(table, loader.inputs, options, component_ids=loader.component_ids[train_ids])
  stats = _stats(config, mesh, build_seconds=round(time.perf_counter() - start, 3),
                 host_bytes=cache.table_bytes(loader, train_ids))
  return BatchStepper(host.batches(start_step, num_steps), train_step, mesh), stats
