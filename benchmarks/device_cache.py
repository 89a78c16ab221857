"""device_cache: training steps/s with the device-resident frame table (data.cache=device: episode
and index sampling plus frame gathering inside the jitted step, lax.scan over many steps per call)
vs its ceiling (the same scanned update on one fixed device-resident batch: no sampling, no
gathering) vs the tf.data stream (data.cache=none). One process, side by side, warm-up excluded,
no augmentation. The cache is the one training builds (rrd_jax/train/feeding.py make_stepper).

python -m benchmarks.device_cache [--quick | --smoke] [--config configs/libero_rrd.py]
    [--out RESULT.json]

Figures: cache_steps_per_s, ceiling_steps_per_s, fraction_of_ceiling (= cache / ceiling; goal
>= 0.9), stream_steps_per_s, cache_speedup_vs_stream, sample_gather_ms_per_step (the in-jit data
path alone). --quick: 200 episodes, 10 steps per call, 3 repeats; --smoke: 8 episodes of 8-12
steps at 36x36, 2 x 4 batches, 2 steps per call, one repeat.
"""

import argparse
import os

import jax

from benchmarks import cache_timing, common, training
from rrd_jax.config import loading
from rrd_jax.data import cache
from rrd_jax.run import parallel
from rrd_jax.train import feeding, prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Per size: embedded episodes, steps per call, repeats.
SIZES = {"full": (1000, 50, 5), "quick": (200, 10, 3), "smoke": (8, 2, 1)}
SMOKE = {"data.image_size": 36, "data.embedded_image_size": 36, "data.embedded_min_length": 8,
         "data.embedded_max_length": 12, "rrd.episodes_per_batch": 2, "rrd.sample_size": 4,
         "data.embedded_dir": common.BENCH_DIR}


def bench_config(size, config_path):
  episodes, _, _ = SIZES[size]
  config = loading.load_config(config_path, overrides=SMOKE if size == "smoke" else None)
  config.data.embedded_episodes = episodes
  config.data.eval_fraction = 0.0  # every episode trains
  config.data.cache = "device"
  config.model.augment = "none"  # the steps compared here do not augment
  return config


def run(size="full", config_path=os.path.join(ROOT, "configs", "libero_rrd.py"), embedded_dir=""):
  size = common.size_name(size)
  config = bench_config(size, config_path)
  if embedded_dir:
    config.data.embedded_dir = embedded_dir
  _, chunk, repeats = SIZES[size]  # chunk: steps per call (and per timed stream interval)
  mesh = parallel.make_mesh()
  data = prepare.open_training_data(config, log=lambda *_: None)
  batches, host_step = training.stream(config, data), training.HostStep(config, data, mesh)

  def stream():  # the tf.data path feeding the jitted step, one batch per step
    for _ in range(chunk):
      metrics = host_step(next(batches))
    jax.block_until_ready(metrics)

  stream()  # warm-up (compilation)
  plan = feeding.plan_device_cache(config, data, mesh)
  stepper, stats = feeding.make_stepper(config, data, mesh, 0, plan, log=lambda *_: None)
  calls = {"stream": stream,
           "cache": cache_timing.cache_calls(host_step, stepper.fn, stepper.cache, chunk),
           "ceiling": cache_timing.ceiling_calls(host_step, stepper.cache, mesh,
                                                 data.loader.inputs.keys,
                                                 host_step.loss_options, chunk)}
  sample_s = cache_timing.sample_gather_s(stepper.cache, chunk, repeats)
  cache_timing.first_calls({k: calls[k] for k in ("cache", "ceiling")})  # warm-ups
  rate = cache_timing.interleaved_rates(calls, repeats, chunk)
  return {
      "config": os.path.relpath(config_path, ROOT),
      "image_size": config.data.image_size, "episodes_per_batch": config.rrd.episodes_per_batch,
      "sample_size": config.rrd.sample_size, "episodes": len(data.train_ids),
      "frames_cached": int(sum(plan.frames)), "cache_build_s": stats["build_seconds"],
      "devices": plan.num_shards, "frames_per_device": plan.frames,
      "sampling_law_max_deviation": plan.law_deviation(),
      "table_mbytes": cache.shard_bytes(data.loader, plan) * plan.num_shards / 2**20,
      "steps_per_call": chunk, "device": str(jax.devices()[0].device_kind),
      "cache_steps_per_s": rate["cache"], "ceiling_steps_per_s": rate["ceiling"],
      "fraction_of_ceiling": rate["cache"] / rate["ceiling"],
      "stream_steps_per_s": rate["stream"],
      "sample_gather_ms_per_step": 1000 * sample_s / chunk,
      "cache_speedup_vs_stream": rate["cache"] / rate["stream"],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_size_flags(parser)
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "libero_rrd.py"))
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  common.prepare(common.size_of(args))
  common.emit(run(common.size_of(args), args.config), args.out)


if __name__ == "__main__":
  main()
