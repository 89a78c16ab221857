"""The generated datasets parts b-d of benchmarks/accelerator.py read: main + wrist embedded
LIBERO-layout datasets, generated once under common.BENCH_DIR, in a child process while part a
runs (FULL plan) or here when they are needed."""

import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common
from benchmarks.accelerator_parts import guards, plans



def describe(episodes, lengths, image_size):
  return f"{episodes} episodes of {lengths[0]}-{lengths[1]} steps at {image_size}^2"


def generate_dataset(episodes, lengths, image_size, root=common.BENCH_DIR):
  """Facts of a main + wrist embedded dataset, generated (once) under `root`: its "dir" (the
  version directory), whether it was generated now, and the seconds that took."""
  from rrd_jax.data import embedded  # pylint: disable=import-outside-toplevel
  params = embedded.EmbeddedParams(num_episodes=episodes, min_length=lengths[0],
                                   max_length=lengths[1], image_size=image_size)
  info = os.path.join(os.path.expanduser(root), params.key(), embedded.BUILDER_NAME,
                      embedded.DATASET_VERSION, "dataset_info.json")
  existed = os.path.exists(info)
  start = time.perf_counter()
  version_dir = embedded.build_embedded_dataset(root, params)
  return {"dir": version_dir, "episodes": episodes, "episode_lengths": list(lengths),
          "stored_image_size": image_size, "generated": not existed,
          "generation_s": time.perf_counter() - start}


GENERATE_CHILD = """import json, sys
from benchmarks.accelerator_parts import datasets
print(json.dumps(datasets.generate_dataset(*json.loads(sys.argv[1]))))
"""


def start_generation(episodes, lengths, image_size, root=common.BENCH_DIR):
  """A child process generating a dataset while part a runs (the generator is one process: on a
  many-core host it takes one core and its minutes overlap part a's); no GPU for it."""
  guards.log(f"  dataset: {describe(episodes, lengths, image_size)}, generating in the "
             "background")
  output = tempfile.TemporaryFile("w+")  # files, not pipes: its progress bars would fill a pipe
  child = subprocess.Popen(
      [sys.executable, "-c", GENERATE_CHILD,
       json.dumps([episodes, list(lengths), image_size, root])],
      cwd=common.ROOT, env=common.child_env(CUDA_VISIBLE_DEVICES=""), stdout=output,
      stderr=subprocess.STDOUT, text=True)
  child.output = output
  return child


def start_generators(plan):
  """{key: child} generating part b's dataset and the seed-shape stream's (if any)."""
  children = {"cache": start_generation(plan.cache_episodes, plan.cache_lengths,
                                        plan.cache_image_size, plan.bench_dir)}
  if any(source == "seed" for *_, source in plan.stream_shapes):
    children["seed_stream"] = start_generation(plan.seed_stream_episodes,
                                               plans.LIBERO10_LENGTHS, 256, plan.bench_dir)
  return children


def dataset(context, key, episodes, lengths, image_size, timeout, root=common.BENCH_DIR):
  """Facts of a generated dataset (generate_dataset): from the background child started for it
  (context["children"][key]), else generated here and now."""
  child = context.get("children", {}).pop(key, None)
  if child is None:
    guards.log(f"  dataset: {describe(episodes, lengths, image_size)}")
    return generate_dataset(episodes, lengths, image_size, root)
  guards.log(f"  waiting for the background generator of {key} (at most {timeout:.0f} s)")
  start = time.perf_counter()
  try:
    child.wait(timeout=max(timeout, 1))
  except subprocess.TimeoutExpired:
    child.kill()
    child.wait()
    raise
  child.output.seek(0)
  output = child.output.read()
  child.output.close()
  if child.returncode:
    raise RuntimeError(f"the background generator exited with status {child.returncode}: "
                       f"{output[-1000:]}")
  facts = next(json.loads(line) for line in reversed(output.splitlines())
               if line.startswith('{"dir"'))
  return dict(facts, generated_in_background=True, waited_s=time.perf_counter() - start)
