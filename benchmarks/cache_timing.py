"""data.cache=device against its ceiling, as benchmarks/device_cache.py and part b of
benchmarks/accelerator.py time it: scanned calls of `chunk` cached steps (sampling and gathering
inside jit), the same scanned update on one fixed device-resident batch (the ceiling), and the
in-jit data path alone."""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from rrd_jax.run import parallel
from rrd_jax.train import step as step_lib


def cache_calls(holder, cached_fn, device_cache, chunk):
  """cache(): one call of `chunk` steps of cached_fn (step.make_cached_train_fn on device_cache,
  a data.cache.DeviceCache) on holder.state."""
  counter = {"step": 0}

  def cache():
    holder.state, metrics = cached_fn(holder.state, device_cache.table,
                                      device_cache.probabilities, counter["step"], chunk)
    jax.block_until_ready(metrics)
    counter["step"] += chunk

  return cache


def ceiling_calls(holder, device_cache, mesh, input_keys, loss_options, chunk):
  """ceiling(): the same scanned update on one fixed device-resident batch. Conservative: with a
  loop-invariant batch XLA may hoist input preprocessing (uint8 -> float, space-to-depth) out of
  the loop, which the real step cannot do."""
  fixed = jax.device_put(device_cache.sample(device_cache.table, device_cache.probabilities, 0),
                         parallel.batch_sharding(mesh))
  update = functools.partial(step_lib.train_update, input_keys=input_keys,
                             loss_options=loss_options)

  @functools.partial(jax.jit, static_argnums=(2,), donate_argnums=(0,))
  def ceiling_fn(s, batch, n):
    s, metrics = jax.lax.scan(lambda s, _: update(s, batch), s, jnp.arange(n))
    return s, jax.tree.map(lambda m: m.mean(0), metrics)

  def ceiling():
    holder.state, metrics = ceiling_fn(holder.state, fixed, chunk)
    jax.block_until_ready(metrics)

  return ceiling


def sample_gather_s(device_cache, chunk, repeats):
  """Median seconds of sampling + gathering `chunk` batches in one scanned call (no update)."""

  @jax.jit
  def sample_only(table, probabilities):
    def body(total, step):
      batch = device_cache.sample(table, probabilities, step)
      leaves = jax.tree.leaves(batch)
      return total + sum(jnp.sum(x[..., :1].astype(jnp.float32)) for x in leaves), None
    return jax.lax.scan(body, 0.0, jnp.arange(chunk))[0]

  run = lambda: sample_only(device_cache.table, device_cache.probabilities).block_until_ready()
  run()
  return common.timed_median(run, repeats)


def first_calls(calls):
  """{name: seconds of its first call (compilation included)}, calling each once."""
  first = {}
  for name, fn in calls.items():
    start = time.perf_counter()
    fn()
    first[name] = time.perf_counter() - start
  return first


def interleaved_rates(calls, repeats, chunk):
  """{name: steps/s}: each call timed `repeats` times, in turn (so load changes hit all alike),
  chunk steps per call, medians."""
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, fn in calls.items():
      times[name].append(common.timed_median(fn, 1))
  return {name: chunk / float(np.median(t)) for name, t in times.items()}
