"""Frames/s the tf.data RLDS path delivers vs frames/s the jitted train step consumes.

python -m benchmarks.pipeline [--quick] [--out RESULT.json]

`configs/libero_rrd.py:seed` shapes (1 episode x K=32 steps, 256x256 images) on an embedded
LIBERO-layout dataset stored at 256x256 (generated once under ~/.cache/rrd_jax/bench). The
objects are the ones training builds (prepare.open_training_data, train_dataset with
data.num_parallel_calls); delivered = the dataset iterated alone, consumed = the jitted step alone
on a batch from it, measured in alternating blocks (medians over blocks). Also the two together as
train.py runs them (next batch, then the step): frames/s and the fraction of time spent waiting
for data. headroom = delivered / consumed (goal >= 1.5).
"""

import statistics
import time

import jax

from benchmarks import common
from rrd_jax.config import loading
from rrd_jax.data import pipeline
from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.run import parallel
from rrd_jax.train import prepare
from rrd_jax.train import step as step_lib

BENCH_DIR = "~/.cache/rrd_jax/bench"


def seed_config(episodes):
  return loading.load_config(variant="seed", overrides={
      "data.embedded_dir": BENCH_DIR, "data.embedded_episodes": episodes,
      "data.embedded_image_size": 256, "data.embedded_min_length": 30,
      "data.embedded_max_length": 60})


def run(quick=False):
  episodes = 30 if quick else 100
  config = seed_config(episodes)
  start = time.perf_counter()
  data = prepare.open_training_data(config, log=lambda *_: None)
  open_s = time.perf_counter() - start
  batches = pipeline.train_dataset(
      data.loader, data.train_ids, SamplerOptions.from_config(config, config.seed),
      num_parallel_calls=config.data.num_parallel_calls).as_numpy_iterator()
  frames = config.rrd.episodes_per_batch * config.rrd.sample_size
  input_keys = data.loader.inputs.keys
  batch = next(batches)
  mesh = parallel.make_mesh(config.mesh.data)
  state = step_lib.create_train_state(config, len(data.vocab), *data.input_sizes(),
                                      rng=jax.random.PRNGKey(0), sharding=parallel.replicated(mesh))
  train_step = step_lib.make_train_step(input_keys, config.rrd, mesh)
  sharding = parallel.batch_sharding(mesh)
  holder = {"state": state}

  def step(b):
    holder["state"], metrics = train_step(holder["state"], parallel.to_global(b, sharding))
    return metrics

  jax.block_until_ready(step(batch))  # compile
  for _ in range(5):  # warm up tf.data (autotuning, thread pools)
    next(batches)
  rounds, pipeline_batches, steps = (3, 20, 5) if quick else (5, 40, 10)
  delivered, consumed, together, waits = [], [], [], []
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(pipeline_batches):
      next(batches)
    delivered.append(pipeline_batches * frames / (time.perf_counter() - start))
    start = time.perf_counter()
    for _ in range(steps):
      metrics = step(batch)
    jax.block_until_ready(metrics)
    consumed.append(steps * frames / (time.perf_counter() - start))
    rate, wait = common.train_from_stream(batches, step, steps, frames)
    together.append(rate)
    waits.append(wait)
  delivered_fps, consumed_fps = statistics.median(delivered), statistics.median(consumed)
  return {"delivered_frames_per_s": delivered_fps, "consumed_frames_per_s": consumed_fps,
          "headroom": delivered_fps / consumed_fps,
          "training_frames_per_s": statistics.median(together),
          "training_data_wait_fraction": statistics.median(waits),
          "batch": f"{config.rrd.episodes_per_batch} x {config.rrd.sample_size} steps, "
                   f"{config.data.image_size}x{config.data.image_size}",
          "dataset_episodes": episodes, "dataset_open_s": open_s,
          "num_parallel_calls": config.data.num_parallel_calls, "rounds": rounds}


def main():
  common.benchmark_main("pipeline", run, __doc__)


if __name__ == "__main__":
  main()
