"""Shared by the benchmarks: where a result goes, and their command line."""

import argparse
import json
import time

import numpy as np


def write(out_path, result):
  with open(out_path, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)


def emit(result, out_path=""):
  """Prints the result as JSON and, with an output path, writes it there too."""
  print(json.dumps(result, indent=2))
  if out_path:
    write(out_path, result)


def machine():
  from benchmarks.run import machine_info  # pylint: disable=import-outside-toplevel
  return machine_info()


def parser(doc):
  """The benchmarks' command line: --quick (small sizes) and --out (the JSON result file)."""
  parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small sizes")
  parser.add_argument("--out", default="", help="also write the JSON result here")
  return parser


def benchmark_main(name, run, doc):
  """`python -m benchmarks.NAME [--quick] [--out F]`: runs run(quick), emits {machine, NAME: ...}."""
  args = parser(doc).parse_args()
  emit({"machine": machine(), name: run(args.quick)}, args.out)


def timed_median(fn, repeats):
  """Median seconds of fn() (fn blocks until its result is ready)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def train_from_stream(batches, step, count, frames):
  """`count` steps fed from `batches` as train.py's BatchStepper does (fetch, then dispatch the
  step): (frames/s, the fraction of the time spent waiting for data)."""
  import jax  # pylint: disable=import-outside-toplevel
  start, wait, metrics = time.perf_counter(), 0.0, None
  for _ in range(count):
    fetch = time.perf_counter()
    batch = next(batches)
    wait += time.perf_counter() - fetch
    metrics = step(batch)
  jax.block_until_ready(metrics)
  elapsed = time.perf_counter() - start
  return count * frames / elapsed, wait / elapsed
