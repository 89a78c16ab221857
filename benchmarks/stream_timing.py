"""The tf.data stream against the train step, as benchmarks/pipeline.py and part c of
benchmarks/accelerator.py time them: delivered frames/s (the stream alone), consumed frames/s
(the step alone, on one batch) and training from the stream as train.py does (frames/s and the
fraction of the time spent waiting for data), in alternating rounds; medians."""

import time

import jax

from benchmarks import common


def seconds(fn, count):
  """Seconds of `count` calls of fn, until the last one's result is ready."""
  start = time.perf_counter()
  result = None
  for _ in range(count):
    result = fn()
  jax.block_until_ready(result)
  return time.perf_counter() - start


def warm_up(batches, step, batch):
  """Compiles the step and warms tf.data up (autotuning, thread pools)."""
  jax.block_until_ready(step(batch))
  for _ in range(5):
    next(batches)


def calibrated_counts(batches, step, batch, block_s, most=1000):
  """(batches, steps, training steps) per round of about block_s seconds each."""
  per_batch = seconds(lambda: next(batches), 3) / 3
  per_step = seconds(lambda: step(batch), 3) / 3
  return tuple(block_count(s, block_s, most) for s in (per_batch, per_step,
                                                       max(per_batch, per_step)))


def block_count(seconds_per_call, block_s, most=2000):
  """Calls in a timed block of about block_s seconds."""
  return int(min(most, max(1, round(block_s / max(seconds_per_call, 1e-9)))))


def stream_rounds(batches, step, batch, frames, rounds, counts):
  """The three measurements in `rounds` alternating rounds; counts: (batches, steps, training
  steps) per round; frames: frames per batch."""
  n_batches, n_steps, n_together = counts
  delivered, consumed, together, waits = [], [], [], []
  for _ in range(rounds):
    delivered.append(n_batches * frames / seconds(lambda: next(batches), n_batches))
    consumed.append(n_steps * frames / seconds(lambda: step(batch), n_steps))
    rate, wait = common.train_from_stream(batches, step, n_together, frames)
    together.append(rate)
    waits.append(wait)
  delivered_fps, consumed_fps = common.median_or_none(delivered), common.median_or_none(consumed)
  return {"delivered_frames_per_s": delivered_fps, "consumed_frames_per_s": consumed_fps,
          "headroom": delivered_fps / consumed_fps,
          "training_frames_per_s": common.median_or_none(together),
          "training_data_wait_fraction": common.median_or_none(waits), "rounds": rounds}
