"""device_cache: training steps/s with the device-resident frame table (data.cache=device: episode
and index sampling plus frame gathering inside the jitted step, lax.scan over many steps per call)
vs its ceiling (the same scanned update on one fixed device-resident batch: no sampling, no
gathering) vs the tf.data stream (data.cache=none). One process, side by side, warm-up excluded.

python -m benchmarks.device_cache [--quick] [--config configs/libero_rrd.py] [--out RESULT.json]

Figures: cache_steps_per_s, ceiling_steps_per_s, fraction_of_ceiling (= cache / ceiling; goal
>= 0.9), stream_steps_per_s, cache_speedup_vs_stream, sample_gather_ms_per_step (the in-jit data
path alone).
"""

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from rrd_jax.config import loading
from rrd_jax.data import cache, pipeline
from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.run import parallel
from rrd_jax.train import prepare
from rrd_jax.train import step as step_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(quick=False, config_path=os.path.join(ROOT, "configs", "libero_rrd.py"), embedded_dir=""):
  config = loading.load_config(config_path)
  config.data.embedded_episodes = 200 if quick else 1000
  if embedded_dir:
    config.data.embedded_dir = embedded_dir
  chunk = 10 if quick else 50  # steps per call (and per timed stream interval)
  repeats = 3 if quick else 5
  config.data.eval_fraction = 0.0  # every episode trains
  mesh = parallel.make_mesh()
  data = prepare.open_training_data(config, log=lambda *_: None)
  loader, ids, inputs = data.loader, data.train_ids, data.loader.inputs
  options = SamplerOptions.from_config(config, seed=0)
  input_keys = inputs.keys

  # Stream: the tf.data path feeding the jitted step, one batch per step.
  stream = pipeline.train_dataset(loader, ids, options).as_numpy_iterator()
  state = step_lib.create_train_state(config, len(data.vocab), *data.input_sizes(),
                                      rng=jax.random.PRNGKey(0), sharding=parallel.replicated(mesh))
  train_step = step_lib.make_train_step(input_keys, config.rrd, mesh)
  sharding = parallel.batch_sharding(mesh)
  holder = {"state": state}

  def stream_steps():
    s = holder["state"]
    for _ in range(chunk):
      s, m = train_step(s, parallel.to_global(next(stream), sharding))
    jax.block_until_ready(m)
    holder["state"] = s

  stream_steps()  # warm-up (compilation)
  build_start = time.perf_counter()
  plan = cache.shard_plan(loader, ids, options, loader.component_ids[ids], int(mesh.devices.size))
  device = cache.DeviceCache(loader, ids, plan, options, mesh, progress=False)
  jax.block_until_ready(device.table)
  build_s = time.perf_counter() - build_start
  cached_fn = step_lib.make_cached_train_fn(input_keys, config.rrd, mesh, device)
  step_counter = {"step": 0}

  def cache_steps():
    s, m = cached_fn(holder["state"], device.table, device.probabilities,
                     step_counter["step"], chunk)
    jax.block_until_ready(m)
    holder["state"] = s
    step_counter["step"] += chunk

  # Ceiling: the same scanned update on one fixed device-resident batch. Conservative: with a
  # loop-invariant batch XLA may hoist input preprocessing (uint8 -> float, space-to-depth) out of
  # the loop, which the real step cannot do.
  fixed = jax.device_put(device.sample(device.table, device.probabilities, 0), sharding)
  update = functools.partial(step_lib.train_update, input_keys=input_keys,
                             rrd_config=config.rrd)

  @functools.partial(jax.jit, static_argnums=(2,), donate_argnums=(0,))
  def ceiling_fn(s, batch, n):
    s, metrics = jax.lax.scan(lambda s, _: update(s, batch), s, jnp.arange(n))
    return s, jax.tree.map(lambda m: m.mean(0), metrics)

  def ceiling_steps():
    s, m = ceiling_fn(holder["state"], fixed, chunk)
    jax.block_until_ready(m)
    holder["state"] = s

  # The data path alone: sampling + gathering `chunk` batches in one scanned call.
  @jax.jit
  def sample_only(table, probabilities):
    def body(total, step):
      batch = device.sample(table, probabilities, step)
      return total + sum(jnp.sum(x[..., :1].astype(jnp.float32)) for x in jax.tree.leaves(batch)), None
    return jax.lax.scan(body, 0.0, jnp.arange(chunk))[0]

  sample_only(device.table, device.probabilities).block_until_ready()
  sample_s = common.timed_median(
      lambda: sample_only(device.table, device.probabilities).block_until_ready(), repeats)

  cache_steps()
  ceiling_steps()  # warm-ups
  times = {"stream": [], "cache": [], "ceiling": []}
  for _ in range(repeats):  # interleaved, so load changes hit all three alike
    for name, fn in (("stream", stream_steps), ("cache", cache_steps), ("ceiling", ceiling_steps)):
      times[name].append(common.timed_median(fn, 1))
  rate = {k: chunk / float(np.median(v)) for k, v in times.items()}
  return {
      "config": os.path.relpath(config_path, ROOT),
      "image_size": config.data.image_size, "episodes_per_batch": config.rrd.episodes_per_batch,
      "sample_size": config.rrd.sample_size, "episodes": len(ids),
      "frames_cached": int(sum(plan.frames)), "cache_build_s": build_s,
      "devices": plan.num_shards, "frames_per_device": plan.frames,
      "sampling_law_max_deviation": plan.law_deviation(),
      "table_mbytes": cache.shard_bytes(loader, plan) * plan.num_shards / 2**20,
      "steps_per_call": chunk, "device": str(jax.devices()[0].device_kind),
      "cache_steps_per_s": rate["cache"], "ceiling_steps_per_s": rate["ceiling"],
      "fraction_of_ceiling": rate["cache"] / rate["ceiling"],
      "stream_steps_per_s": rate["stream"],
      "sample_gather_ms_per_step": 1000 * sample_s / chunk,
      "cache_speedup_vs_stream": rate["cache"] / rate["stream"],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "libero_rrd.py"))
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  common.emit(run(args.quick, args.config), args.out)


if __name__ == "__main__":
  main()
