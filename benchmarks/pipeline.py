"""Frames/s the tf.data RLDS path delivers vs frames/s the jitted train step consumes.

python -m benchmarks.pipeline [--quick | --smoke] [--out RESULT.json]

`configs/libero_rrd.py:seed` shapes (1 episode x K=32 steps, 256x256 images) on an embedded
LIBERO-layout dataset stored at 256x256 (generated once under ~/.cache/rrd_jax/bench). The
objects are the ones training builds (prepare.open_training_data, train_dataset with
data.num_parallel_calls); delivered = the dataset iterated alone, consumed = the jitted step alone
on a batch from it, measured in alternating blocks (medians over blocks). Also the two together as
train.py runs them (next batch, then the step): frames/s and the fraction of time spent waiting
for data. headroom = delivered / consumed (goal >= 1.5). --quick: 30 episodes, 3 rounds; --smoke:
4 episodes of 8-12 steps at 36x36, 1 x 4 batches, one round.
"""

import time

from benchmarks import common, stream_timing, training
from rrd_jax.config import loading
from rrd_jax.run import parallel
from rrd_jax.train import prepare

# Per size: dataset episodes, rounds, batches and steps per round, and the smoke size's overrides.
SIZES = {"full": (100, 5, 40, 10), "quick": (30, 3, 20, 5), "smoke": (4, 1, 2, 1)}
SMOKE = {"data.embedded_image_size": 36, "data.image_size": 36, "rrd.sample_size": 4,
         "data.embedded_min_length": 8, "data.embedded_max_length": 12}


def seed_config(episodes, **overrides):
  return loading.load_config(variant="seed", overrides={
      "data.embedded_dir": common.BENCH_DIR, "data.embedded_episodes": episodes,
      "data.embedded_image_size": 256, "data.embedded_min_length": 30,
      "data.embedded_max_length": 60, **overrides})


def run(size="full"):
  size = common.size_name(size)
  episodes, rounds, pipeline_batches, steps = SIZES[size]
  config = seed_config(episodes, **(SMOKE if size == "smoke" else {}))
  start = time.perf_counter()
  data = prepare.open_training_data(config, log=lambda *_: None)
  open_s = time.perf_counter() - start
  batches = training.stream(config, data)
  frames = config.rrd.episodes_per_batch * config.rrd.sample_size
  batch = next(batches)
  step = training.HostStep(config, data, parallel.make_mesh(config.mesh.data))
  stream_timing.warm_up(batches, step, batch)
  figures = stream_timing.stream_rounds(batches, step, batch, frames, rounds,
                                        (pipeline_batches, steps, steps))
  return {**figures,
          "batch": f"{config.rrd.episodes_per_batch} x {config.rrd.sample_size} steps, "
                   f"{config.data.image_size}x{config.data.image_size}",
          "dataset_episodes": episodes, "dataset_open_s": open_s,
          "num_parallel_calls": config.data.num_parallel_calls}


def main():
  common.benchmark_main("pipeline", run, __doc__)


if __name__ == "__main__":
  main()
