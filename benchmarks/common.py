"""Shared by the benchmarks: their sizes, where a result goes, their command line, timing
helpers."""

import argparse
import importlib.util
import json
import os
import statistics
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
# Every benchmark runs at one of these sizes: "full" (the figures BENCHMARKS.md quotes), "quick"
# (minutes on a 2-core CPU) and "smoke" (seconds: tiny shapes, one repeat; it checks that the
# benchmark runs and writes its keys, its figures mean nothing).
SIZES = ("smoke", "quick", "full")
# Generated datasets stay here between runs (keyed by their parameters).
BENCH_DIR = "~/.cache/rrd_jax/bench"
# --smoke turns JAX's persistent compilation cache on here (the command-line tools' default), so
# a second smoke run skips most compilation; the other sizes compile as a first run does.
COMPILE_CACHE_DIR = "~/.cache/rrd_jax/compilation"


def size_name(size):
  """"smoke", "quick" or "full"; a bool is the older `quick` flag (True: "quick")."""
  if isinstance(size, bool) or size is None:
    return "quick" if size else "full"
  if size not in SIZES:
    raise ValueError(f"unknown benchmark size {size!r}; choose from {', '.join(SIZES)}")
  return size


def sized(size, **values):
  """values[size_name(size)]: a benchmark's setting per size, e.g. sized(size, smoke=1, quick=5,
  full=20)."""
  return values[size_name(size)]


def prepare(size):
  """What a size needs before a benchmark starts: --smoke turns the compilation cache on."""
  if size_name(size) == "smoke":
    from rrd_jax.run import compile_cache  # pylint: disable=import-outside-toplevel
    compile_cache.enable(COMPILE_CACHE_DIR)


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


def add_size_flags(parser):
  """--quick and --smoke (at most one); size_of(args) reads them back."""
  group = parser.add_mutually_exclusive_group()
  group.add_argument("--quick", action="store_true", help="small sizes (minutes on a 2-core CPU)")
  group.add_argument("--smoke", action="store_true",
                     help="tiny sizes, one repeat (seconds): checks that it runs")
  return parser


def size_of(args):
  return "smoke" if args.smoke else "quick" if args.quick else "full"


def parser(doc):
  """The benchmarks' command line: --quick / --smoke (smaller sizes) and --out (the JSON file)."""
  parser = argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_size_flags(parser)
  parser.add_argument("--out", default="", help="also write the JSON result here")
  return parser


def benchmark_main(name, run, doc):
  """`python -m benchmarks.NAME [--quick | --smoke] [--out F]`: runs run(size), emits
  {machine, NAME: ...}."""
  args = parser(doc).parse_args()
  prepare(size_of(args))
  emit({"machine": machine(), name: run(size_of(args))}, args.out)


def child_env(**extra):
  """os.environ for a child process that imports the repository's modules: the repository
  first on PYTHONPATH (what was there kept after it), plus `extra`."""
  path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
  return dict(os.environ, PYTHONPATH=path, **extra)


def has_module(name):
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


def error_text(e):
  return f"{type(e).__name__}: {e}"


def ratio(a, b):
  """a / b, or None when either is missing (or b is 0)."""
  return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def median_or_none(values):
  return float(statistics.median(values)) if values else None


def timed_median(fn, repeats):
  """Median seconds of fn() (fn blocks until its result is ready)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def read_metrics(run_dir):
  """The rows of a run's metrics.jsonl."""
  with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def values_after_first(rows, key):
  """The logged values of `key`, the first (its interval holds the compilation) left out unless
  it is the only one."""
  values = [r[key] for r in rows if key in r]
  return values[1:] or values


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
