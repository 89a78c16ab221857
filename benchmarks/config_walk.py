"""How far the training config travels through the package: a structure measure, not a timing.

python -m benchmarks.config_walk [--loop rrd_jax.train.loop] [--out RESULT.json]

Runs a tiny train_and_evaluate (the embedded dataset, 4 steps, 40² images) under sys.setprofile and
records every call of a function in rrd_jax that receives a ConfigDict (the whole config or one of
its sections) as an argument. From the sequence of files those calls are in it reports:
  files            how many files the config enters;
  functions        how many distinct functions receive it;
  file_changes     how often consecutive calls are in different files (the walk's length);
  returns          how often the walk enters a file it had left before (not the one it just left);
--loop names the module whose train_and_evaluate(config, workdir) is the entry point, so older
layouts can be measured too (rrd_jax.reward_loop before the sub-packages).
"""

import argparse
import importlib
import json
import os
import sys
import tempfile

import ml_collections


def walk(loop_module):
  """[(file relative to the repository, function name)] of the config-receiving calls, in
  order."""
  try:
    loading = importlib.import_module("rrd_jax.config.loading")
  except ImportError:  # the flat layout before the sub-packages
    loading = importlib.import_module("rrd_jax.config_utils")
  loop = importlib.import_module(loop_module)
  package = os.path.dirname(importlib.import_module("rrd_jax").__file__)
  root = os.path.dirname(package)
  calls = []

  def profile(frame, event, arg):
    del arg
    if event != "call" or not frame.f_code.co_filename.startswith(package):
      return
    names = frame.f_code.co_varnames[:frame.f_code.co_argcount + frame.f_code.co_kwonlyargcount]
    if any(isinstance(frame.f_locals.get(n), ml_collections.ConfigDict) for n in names):
      calls.append((os.path.relpath(frame.f_code.co_filename, root), frame.f_code.co_name))

  with tempfile.TemporaryDirectory() as tmp:
    config = loading.load_config(overrides={
        "data.embedded_dir": os.path.join(tmp, "embedded"), "data.embedded_episodes": 24,
        "data.embedded_min_length": 8, "data.embedded_max_length": 12,
        "data.embedded_image_size": 40, "data.image_size": 40, "train.num_steps": 4, "train.log_every_steps": 2,
        "eval.every_steps": 4, "eval.batches": 1, "eval.episodes": 4, "rrd.sample_size": 4,
        "rrd.episodes_per_batch": 4, "model.hidden_sizes": (16, 16), "compile_cache_dir": ""})
    sys.setprofile(profile)
    try:
      loop.train_and_evaluate(config, os.path.join(tmp, "run"), log=lambda *a, **k: None)
    finally:
      sys.setprofile(None)
  return calls


def measure(calls):
  """The figures of a walk (see the module docstring)."""
  files = [f for i, (f, _) in enumerate(calls) if i == 0 or f != calls[i - 1][0]]
  returns, seen = 0, set()
  for i, f in enumerate(files):
    if f in seen:
      returns += 1
    if i:
      seen.add(files[i - 1])
  return {"files": len(set(files)), "functions": len(set(calls)),
          "file_changes": len(files) - 1, "returns": returns,
          "per_file": {f: sorted({fn for g, fn in calls if g == f}) for f in sorted(set(files))}}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--loop", default="rrd_jax.train.loop")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  result = measure(walk(args.loop))
  print(json.dumps({k: v for k, v in result.items() if k != "per_file"}))
  for path, functions in result["per_file"].items():
    print(f"  {path}: {', '.join(functions)}")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
