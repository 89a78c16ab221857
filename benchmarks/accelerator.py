"""The reward model on one accelerator, in one call (issue 16): the train step against PyTorch,
the sharded device cache, the tf.data stream and the seed command end to end.

python -m benchmarks.accelerator [--quick | --smoke] [--out RESULT.json]
python -m benchmarks.run --only accelerator [--quick | --smoke] [--out RESULT.json]

This module runs the parts in turn; each part is a module of benchmarks/accelerator_parts/ (plans:
the sizes; step, device_cache, stream, seed_command: the parts a-d; datasets and rendered: the data
b-d read; guards: what they share).

Parts, run in this order; each is wrapped (one that fails records {"error": ...} and the others
still run), the JSON is rewritten after every part and shape (a run cut short keeps what it had),
progress lines go to stderr, and a part that the time budget (7.5 min; --quick 2.8 min) no longer
covers records {"skipped": ...} (--smoke: every part runs, on the smallest shapes, in seconds
past the compilation: it checks the command before the one GPU call it exists for):
  (a) step: the jitted reward train step (benchmarks/reward_step.py's jax_setup, no augmentation)
      in float32 and bfloat16 (model.dtype) against the PyTorch port
      (benchmarks/torch_ports/torch_reference.py) eager and under torch.compile, same initial
      parameters, same device (a GPU: CUDA for torch), each batch already on the device. Shapes:
      the seed command's 1 episode x 32 steps at 256^2 and a throughput shape, 32 x 32 at 128^2
      (--quick: 1 x 8 and 4 x 8 at 64^2; --smoke: 1 x 4 at 36^2). Steps are timed
      in blocks of back-to-back steps with one synchronisation per block, the four variants
      interleaved block by block, medians reported. Figures per shape: steps_per_s and
      frames_per_s of each variant, first_call_s (compilation included), speedup_vs_eager and
      speedup_vs_compile for float32 and bfloat16, and the loss / gradient equivalence of the port
      (reward_step.check_equivalence in float32 at "highest" matmul precision; --quick: at the
      second shape only). The timed float32 steps run at both sides' TF32 settings on a GPU
      (JAX's DEFAULT precision; torch with float32_matmul_precision "high"), recorded under torch.
  (b) device_cache: data.cache=device (split over every device: rrd_jax/data/cache.py shard_plan,
      DeviceCache) on a generated LIBERO-10-sized dataset (379 episodes of 134-401 steps, about
      101k frames, main + wrist cameras, model.use_wrist) at 128^2 (--quick: 30 short episodes at
      64^2); 32 x 32 batches. The generator (tfds, one process, one core) runs in a child process
      while part a runs. It made about 290 frames/s at 256^2 on a busy 2-core EPYC (6 min for
      101k frames, over the call's budget) and about 1,000 at 128^2 (under 2 min). Figures:
      generation seconds and the generator's frames/s, cache_build_s, cache_steps_per_s against
      ceiling_steps_per_s (the same scanned update on one fixed device-resident batch) and
      fraction_of_ceiling, measured as benchmarks/device_cache.py does (no augmentation).
      frames_source says where the frames came from: "rlds" (the generated dataset, as above), or
      without tensorflow "rendered in memory (no tensorflow)": the same generator's numpy code
      (rrd_jax/data/scenes.py generate_episode, which needs no TensorFlow) renders the same
      episodes (no JPEG round trip) in spawned processes (dataset.generation_s and
      generator_frames_per_s are then the rendering's), and the real cache.DeviceCache places
      them on the devices through a stand-in loader (RenderedLoader, with EpisodeLoader's
      step_batches): same shard plan, padding, sampling law and step.
      cache_build_s is then the concatenation, padding and transfer, with no decoding.
  (c) stream: data.cache=none through tf.data with all the host's cores: delivered frames/s (the
      dataset alone), consumed frames/s (the step alone) and, training from the stream as train.py
      does, frames/s and the data-wait fraction; at the seed shape (on LIBERO-length episodes
      stored at 256^2) and at the throughput shape (on part b's dataset).
  (d) seed_command: `python -m rrd_jax.cli.pytorch_flags` with the seed command's flags (500 updates,
      --libero_image_size 256) on part b's dataset: wall seconds, streaming; the legacy CLI has no
      cache flag, so the device-cached run is its equivalent `python -m rrd_jax.cli.train` command
      (pytorch_flags.translate's overrides) plus --config.data.cache=device. --quick: 10 updates at 64^2.

Parts c and d need tensorflow and tensorflow_datasets and record {"skipped": ...} without them;
parts a and b need neither (jax, flax, optax, chex, ml_collections; torch for a's torch sides,
which record {"skipped": "torch not installed"} without it).

On a GPU machine, from the repository root, one line (CUDA builds as in
benchmarks/requirements.txt; the JSON and the log land in $OUT):
  pip install -r requirements.txt pillow==13.0.0 "jax[cuda12]==0.10.2" && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126 && PYTHONUNBUFFERED=1 python -m benchmarks.accelerator --out "$OUT/accelerator.json" 2>&1 | tee "$OUT/accelerator.log"
"""

import os

# Part d trains in child processes on the same GPU: this process must not hold 75% of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402  pylint: disable=wrong-import-position

import jax  # noqa: E402  pylint: disable=wrong-import-position

from benchmarks import common  # noqa: E402  pylint: disable=wrong-import-position
from benchmarks.accelerator_parts import (  # noqa: E402  pylint: disable=wrong-import-position
    datasets, device_cache, guards, plans, seed_command, step, stream)
from rrd_jax.run import lifecycle  # noqa: E402  pylint: disable=wrong-import-position

FULL, QUICK, SMOKE, PLANS = plans.FULL, plans.QUICK, plans.SMOKE, plans.PLANS  # the sizes

PARTS = (  # name, letter, needs tensorflow (part b renders its frames in memory without it)
    ("step", "a", False), ("device_cache", "b", False), ("stream", "c", True),
    ("seed_command", "d", True))


def accelerator_info():
  device = jax.devices()[0]
  info = {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "host_cores": os.cpu_count()}
  try:
    stats = device.memory_stats() or {}
    info["device_memory_gib"] = stats["bytes_limit"] / 2**30 if "bytes_limit" in stats else None
  except Exception:  # pylint: disable=broad-except  (backends without memory statistics)
    info["device_memory_gib"] = None
  return info


def goal(value, target, at_most=False):
  met = None if value is None else (value <= target if at_most else value >= target)
  return {"value": value, "goal": f"{'<=' if at_most else '>='} {target}", "met": met}


def goals(result, plan):
  """Issue 16's goals (meaningful on a GPU) against this run's figures."""
  shape = result.get("step", {}).get(plan.step_shapes[-1][0], {})
  out = {"step_shape": plan.step_shapes[-1][0], "stream_shape": plan.stream_shapes[0][0],
         "applies": plan is FULL and jax.default_backend() == "gpu"}  # set for one GPU
  for dtype in ("float32", "bfloat16"):
    out[f"step_{dtype}_vs_eager"] = goal(shape.get("speedup_vs_eager", {}).get(dtype), 3.0)
    out[f"step_{dtype}_vs_compile"] = goal(shape.get("speedup_vs_compile", {}).get(dtype), 1.5)
  out["device_cache_fraction_of_ceiling"] = goal(
      result.get("device_cache", {}).get("fraction_of_ceiling"), 0.9)
  stream_figures = result.get("stream", {}).get(plan.stream_shapes[0][0], {})
  out["stream_data_wait_fraction"] = goal(stream_figures.get("training_data_wait_fraction"), 0.1,
                                          at_most=True)
  return out


SUMMARY_KEYS = {"steps_per_s", "speedup_vs_eager", "speedup_vs_compile", "equal", "frames_source",
                "generated", "generation_s", "generator_frames_per_s", "cache_build_s",
                "cache_steps_per_s", "ceiling_steps_per_s", "fraction_of_ceiling",
                "delivered_frames_per_s", "consumed_frames_per_s", "training_data_wait_fraction",
                "wall_s", "train_steps_per_s", "error", "skipped"}


def summary(result):
  """The headline figures as one flat {path: value} (what `benchmarks.run` prints)."""
  flat = lifecycle._flatten({k: v for k, v in result.items()  # pylint: disable=protected-access
                             if k not in ("summary", "goals")})
  return {path: value for path, value in flat.items()
          if SUMMARY_KEYS & set(path.split(".")) and "data_stats" not in path
          and (value is None or isinstance(value, (int, float, str)))}


def part_function(name, plan, save, context, budget):
  return {"step": lambda out: step.part_step(plan, out, save, budget),
          "device_cache": lambda out: device_cache.part_cache(plan, out, save, context, budget),
          "stream": lambda out: stream.part_stream(plan, out, save, context, budget),
          "seed_command": lambda out: seed_command.part_seed_command(plan, out, save, context,
                                                                     budget)}[name]


def run_part(name, letter, needs_tensorflow, plan, result, save, context, budget):
  """result[name]: the part's figures, or why it was skipped."""
  guards.log(f"({letter}) {name}: {budget.elapsed():.0f} s elapsed, "
             f"{budget.remaining():.0f} s left")
  if needs_tensorflow and not guards.tensorflow_available():
    result[name] = {"skipped": "tensorflow / tensorflow_datasets not installed"}
  elif budget.remaining() < plan.part_min_s[name]:
    result[name] = guards.skipped_for_budget(budget)
  else:
    start = time.perf_counter()
    guards.guarded_fill(result, name, part_function(name, plan, save, context, budget))
    result[name]["part_s"] = time.perf_counter() - start
  guards.release_memory()
  save()


def run(size="full", on_partial=None, plan=None):
  """All four parts; on_partial(result) after each part and shape (to write partial JSON).
  plan: PLANS[size] by default."""
  size = common.size_name(size)
  plan = plan or PLANS[size]
  budget, context = guards.Budget(plan.budget_s), {}
  result = {"plan": size, "budget_s": plan.budget_s, "accelerator": accelerator_info()}

  def save():
    result["elapsed_s"] = budget.elapsed()
    result["summary"] = summary(result)
    if on_partial is not None:
      on_partial(result)

  if plan.generate_in_background and guards.tensorflow_available():
    context["children"] = datasets.start_generators(plan)
  for name, letter, needs_tensorflow in PARTS:
    run_part(name, letter, needs_tensorflow, plan, result, save, context, budget)
  for child in context.get("children", {}).values():  # a part that would have used it was skipped
    child.kill()
  guards.guarded(result, "goals", lambda: goals(result, plan))
  save()
  guards.log(f"done in {budget.elapsed():.0f} s")
  return result


def main():
  args = common.parser(__doc__).parse_args()
  size = common.size_of(args)
  common.prepare(size)
  machine = common.machine()

  def on_partial(result):
    if args.out:
      common.write(args.out, {"machine": machine, "accelerator": result})

  common.emit({"machine": machine, "accelerator": run(size, on_partial)}, args.out)


if __name__ == "__main__":
  main()
