"""Part c of benchmarks/accelerator.py: data.cache=none through tf.data with all the host's cores,
as benchmarks/stream_timing.py measures it (delivered and consumed frames/s, training from the
stream: frames/s and the data-wait fraction), in rounds of about plan.stream_block_s each; at the
seed shape (on LIBERO-length episodes stored at 256^2) and the throughput shape (part b's data)."""

import os

from benchmarks import stream_timing, training
from benchmarks.accelerator_parts import datasets, guards, plans
from rrd_jax.run import parallel


def stream_setup(version_dir, episodes, steps, image_size):
  """(batch iterator, step(numpy batch) -> metrics, first batch): the objects training builds."""
  # pylint: disable=import-outside-toplevel
  from rrd_jax.config import loading
  from rrd_jax.train import prepare
  config = loading.load_config(overrides={
      "data.dataset_dir": version_dir, "data.image_size": image_size,
      "rrd.episodes_per_batch": episodes, "rrd.sample_size": steps, "data.eval_fraction": 0.0})
  data = prepare.open_training_data(config, log=lambda *_: None)
  batches = training.stream(config, data)
  step = training.HostStep(config, data, parallel.make_mesh(config.mesh.data))
  return batches, step, next(batches)


def stream_rounds(batches, step, batch, frames, plan):
  """stream_timing's figures, each round's counts calibrated to about plan.stream_block_s."""
  stream_timing.warm_up(batches, step, batch)
  counts = stream_timing.calibrated_counts(batches, step, batch, plan.stream_block_s)
  figures = stream_timing.stream_rounds(batches, step, batch, frames, plan.stream_rounds, counts)
  return dict(figures, blocks=dict(zip(("batches", "steps", "training_steps"), counts)))


def stream_dataset(source, plan, context, timeout):
  """(version dir, facts) of a shape's dataset; source "cache": part b's dataset, "seed": a
  dataset of LIBERO-length episodes stored at 256^2 (as LIBERO's), generated here."""
  if source == "seed":
    facts = datasets.dataset(context, "seed_stream", plan.seed_stream_episodes,
                             plans.LIBERO10_LENGTHS, 256, timeout, plan.bench_dir)
    return facts["dir"], facts
  if "cache_dataset" in context:
    return context["cache_dataset"], {"dir": context["cache_dataset"],
                                      "stored_image_size": plan.cache_image_size}
  raise RuntimeError("part b's dataset is missing (its generation failed or was skipped)")


def stream_shape(name, episodes, steps, image_size, source, plan, context, timeout, out):
  """Fills `out` with one shape's stream figures (stream_dataset says which dataset)."""
  version_dir, out["dataset"] = stream_dataset(source, plan, context, timeout)
  out.update(batch=f"{episodes} x {steps} steps at {image_size}^2", image_size=image_size,
             frames_per_step=episodes * steps)
  guards.log(f"(c) stream {name}: {out['batch']}")
  batches, step, batch = stream_setup(version_dir, episodes, steps, image_size)
  out.update(stream_rounds(batches, step, batch, episodes * steps, plan))


def part_stream(plan, out, save, context, budget):
  """(c) the tf.data stream with all the host's cores, at each of plan.stream_shapes."""
  out.update(host_cores=os.cpu_count(), usable_cores=len(os.sched_getaffinity(0)),
             num_parallel_calls="AUTOTUNE (data.num_parallel_calls=-1)")
  fills = [(name, lambda o, n=name, e=episodes, k=steps, s=size, src=source: stream_shape(
      n, e, k, s, src, plan, context, budget.remaining(), o))
           for name, episodes, steps, size, source in plan.stream_shapes]
  guards.fill_each(out, fills, plan.part_min_s["stream_shape"], budget, save)
