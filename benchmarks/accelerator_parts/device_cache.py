"""Part b of benchmarks/accelerator.py: data.cache=device (split over every device: rrd_jax/data/
cache.py shard_plan, DeviceCache) on a generated LIBERO-10-sized main + wrist dataset, its steps/s
against the ceiling (benchmarks/cache_timing.py, as benchmarks/device_cache.py measures it, no
augmentation). Frames from the RLDS dataset (frames_source "rlds"), or without tensorflow from the
same generator's episodes rendered in memory (rendered.RENDERED).

rrd_jax/train/feeding.py builds the same cache for training (plan_device_cache, make_stepper), but
it imports the tf.data pipeline, and the device machines have no TensorFlow: the cache is built
here from the same rrd_jax.data.cache pieces instead."""

import time
import types

import jax
import numpy as np

from benchmarks import cache_timing
from benchmarks.accelerator_parts import datasets, guards, rendered
from rrd_jax.data import cache
from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.model.losses import LossOptions
from rrd_jax.run import parallel
from rrd_jax.train import step as step_lib

HOST_COPIES = 2.5  # a shard's decoded chunks and their concatenation pass through host memory


def cache_config(version_dir, plan):
  """Part b's config: version_dir "" for frames rendered in memory (no dataset is opened)."""
  from rrd_jax.config import loading  # pylint: disable=import-outside-toplevel
  episodes, steps = plan.cache_batch
  return loading.load_config(overrides={
      "data.dataset_dir": version_dir, "data.image_size": plan.cache_image_size,
      "model.use_wrist": True, "rrd.episodes_per_batch": episodes, "rrd.sample_size": steps,
      "data.eval_fraction": 0.0, "data.cache": "device"})


def check_memory(per_device, num_shards, available, host_copies):
  """MemoryError when a shard does not fit its device (`available` bytes), or decoding does not
  fit the host."""
  if available is not None and per_device > available:
    raise MemoryError(f"a shard needs {per_device / 2**30:.1f} GiB, the device has "
                      f"{available / 2**30:.1f} GiB free")
  host = parallel.host_available_bytes()
  if host_copies and host is not None and host_copies * per_device * num_shards > host:
    raise MemoryError(f"decoding needs about {host_copies} x {per_device / 2**30:.1f} GiB of "
                      f"host memory per shard, the host has {host / 2**30:.1f} GiB available")


def place_on_devices(loader, ids, config, out, save, host_copies):
  """(DeviceCache, mesh): the episodes `ids` of `loader` split over every device (cache.shard_plan)
  and decoded onto them by cache.DeviceCache itself, with its figures in `out`. host_copies:
  bytes of host memory needed per byte of the cache (None: not checked here)."""
  frames = int(loader.index.lengths[ids].sum())
  mesh = parallel.make_mesh()
  options = SamplerOptions.from_config(config, seed=0)
  shards = cache.shard_plan(loader, ids, options, loader.component_ids[ids], int(mesh.devices.size))
  per_device = cache.shard_bytes(loader, shards)
  available = parallel.available_bytes(mesh.devices.ravel()[0])
  out.update(devices=shards.num_shards, cameras=len(loader.inputs.frames),
             frames_per_device=[int(f) for f in shards.frames], gib_per_device=per_device / 2**30,
             device_gib_available=available / 2**30 if available else None)
  save()
  check_memory(per_device, shards.num_shards, available, host_copies)
  what = "caching" if isinstance(loader, rendered.RenderedLoader) else "decoding"
  guards.log(f"  {what} {frames} frames x {out['cameras']} cameras onto {shards.num_shards} "
             "device(s)")
  start = time.perf_counter()
  device = cache.DeviceCache(loader, ids, shards, options, mesh, progress=False)
  jax.block_until_ready(device.table)
  out["cache_build_s"] = time.perf_counter() - start
  out["cache_build_frames_per_s"] = frames / out["cache_build_s"]
  save()
  return device, mesh


def build_cache(config, out, save):
  """(DeviceCache, mesh, the model's facts): indexes part b's dataset, decodes it onto the
  devices."""
  from rrd_jax.train import prepare  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  data = prepare.open_training_data(config, log=lambda *_: None)
  out["index_s"] = time.perf_counter() - start
  loader, ids = data.loader, data.train_ids
  out["dataset"]["frames"] = frames = int(loader.index.lengths[ids].sum())
  if out["dataset"]["generated"]:
    out["dataset"]["generator_frames_per_s"] = frames / out["dataset"]["generation_s"]
  device, mesh = place_on_devices(loader, ids, config, out, save, HOST_COPIES)
  return device, mesh, {"input_keys": loader.inputs.keys, "num_instructions": len(data.vocab),
                        "input_sizes": tuple(data.input_sizes())}


def build_rendered_cache(config, plan, out, save):
  """(DeviceCache, mesh, the model's facts) without tensorflow: part b's episodes (same sizes and
  generator as its RLDS dataset) rendered in memory (rendered.render_episodes), then placed on
  the devices by cache.DeviceCache through a rendered.RenderedLoader."""
  from rrd_jax.config.inputs import ModelInputs  # pylint: disable=import-outside-toplevel
  inputs = ModelInputs.from_config(config)
  episodes, lengths, size = plan.cache_episodes, plan.cache_lengths, plan.cache_image_size
  expected_frames = episodes * sum(lengths) / 2
  processes = rendered.render_processes(expected_frames)
  out["dataset"] = {"source": rendered.RENDERED, "episodes": episodes,
                    "episode_lengths": list(lengths), "stored_image_size": size,
                    "render_processes": processes}
  host = parallel.host_available_bytes()
  expected_bytes = expected_frames * cache.frame_bytes(inputs)
  if host is not None and HOST_COPIES * expected_bytes > host:
    raise MemoryError(f"rendering and caching need about {HOST_COPIES} x "
                      f"{expected_bytes / 2**30:.1f} GiB of host memory, the host has "
                      f"{host / 2**30:.1f} GiB available")
  guards.log(f"  rendering {datasets.describe(episodes, lengths, size)} in memory ({processes} "
             f"process{'es' if processes > 1 else ''}; no tensorflow)")
  start = time.perf_counter()
  loader = rendered.RenderedLoader(rendered.render_episodes(episodes, lengths, size, processes),
                                   inputs, config.returns)
  out["dataset"]["generation_s"] = time.perf_counter() - start
  out["dataset"]["frames"] = frames = int(loader.index.lengths.sum())
  out["dataset"]["generator_frames_per_s"] = frames / out["dataset"]["generation_s"]
  save()
  device, mesh = place_on_devices(loader, np.arange(episodes, dtype=np.int64), config, out, save,
                                  None)
  return device, mesh, {"input_keys": inputs.keys, "num_instructions": len(loader.vocab),
                        "input_sizes": loader.input_sizes}


def time_cache(config, device, mesh, plan, input_keys, num_instructions, input_sizes):
  """Cache steps/s vs the ceiling (one fixed device-resident batch), as device_cache.py does.
  input_keys: the model's inputs; num_instructions: the vocabulary's size; input_sizes: (state
  size, action size)."""
  chunk = plan.cache_chunk
  holder = types.SimpleNamespace(state=step_lib.create_train_state(  # cache and ceiling advance it
      config, num_instructions, *input_sizes, rng=jax.random.PRNGKey(0),
      sharding=parallel.replicated(mesh)))
  loss = LossOptions.from_config(config.rrd)
  cached_fn = step_lib.make_cached_train_fn(input_keys, loss, mesh, device)
  calls = {"cache": cache_timing.cache_calls(holder, cached_fn, device, chunk),
           "ceiling": cache_timing.ceiling_calls(holder, device, mesh, input_keys, loss, chunk)}
  first = cache_timing.first_calls(calls)
  sample_s = cache_timing.sample_gather_s(device, chunk, plan.cache_repeats)
  rate = cache_timing.interleaved_rates(calls, plan.cache_repeats, chunk)
  frames = config.rrd.episodes_per_batch * config.rrd.sample_size
  return {"batch": f"{config.rrd.episodes_per_batch} x {config.rrd.sample_size}",
          "image_size": config.data.image_size, "steps_per_call": chunk,
          "first_call_s": first, "cache_steps_per_s": rate["cache"],
          "ceiling_steps_per_s": rate["ceiling"], "cache_frames_per_s": rate["cache"] * frames,
          "fraction_of_ceiling": rate["cache"] / rate["ceiling"],
          "sample_gather_ms_per_step": 1000 * sample_s / chunk}


def part_cache(plan, out, save, context, budget):
  """(b) the sharded device cache on a LIBERO-10-sized main + wrist dataset: the generated RLDS
  dataset (frames_source "rlds"), or without tensorflow the same generator's episodes rendered in
  memory (frames_source RENDERED; parts c and d, which need the RLDS dataset, are skipped then)."""
  if guards.tensorflow_available():
    out["frames_source"] = "rlds"
    out["dataset"] = datasets.dataset(context, "cache", plan.cache_episodes, plan.cache_lengths,
                                      plan.cache_image_size, budget.remaining(), plan.bench_dir)
    version_dir = context["cache_dataset"] = out["dataset"]["dir"]
    save()
    config = cache_config(version_dir, plan)
    device, mesh, facts = build_cache(config, out, save)
  else:
    out["frames_source"] = rendered.RENDERED
    config = cache_config("", plan)
    device, mesh, facts = build_rendered_cache(config, plan, out, save)
  guards.log("  timing cache steps vs the ceiling")
  out.update(time_cache(config, device, mesh, plan, **facts))
