"""Runs the benchmarks and writes one JSON object: {"machine": ..., NAME: figures, ...}.

python -m benchmarks.run [--quick] [--only NAME[,NAME]] [--out RESULT.json]

Each benchmark is a module with `run(quick: bool) -> dict`, imported only when it runs; one that
cannot be imported is reported as {"skipped": "module not available"}, one that fails as
{"error": "..."}. --quick shrinks every benchmark (and skips `scaling`) to finish in minutes on a
2-core CPU. The PyTorch-side benchmarks need `pip install -r benchmarks/requirements.txt`.
`accelerator` (benchmarks/accelerator.py: one GPU in <= 8 minutes) also reports its figures as they
come, so with --out an interrupted run still leaves them in RESULT.json.
"""

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script_benchmark(module, quick_args, full_args):
  """A `run(quick)` for the benchmarks that are command-line scripts writing --out JSON."""

  def run(quick):
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "result.json")
      subprocess.run([sys.executable, "-m", module, *(quick_args if quick else full_args),
                      "--out", out], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                     env=dict(os.environ, PYTHONPATH=ROOT))
      with open(out, encoding="utf-8") as f:
        return json.load(f)

  return run


def _scaling(quick):
  if quick:
    return {"skipped": "not run with --quick"}
  return _script_benchmark("benchmarks.scaling", [], ["--steps", "60"])(quick)


def _module(name):
  return lambda quick: importlib.import_module(f"benchmarks.{name}").run(quick)


def _reporting_module(name):
  """A benchmark whose run(quick, on_partial) hands over its figures so far after each part."""
  return lambda quick, on_partial=None: importlib.import_module(f"benchmarks.{name}").run(
      quick, on_partial=on_partial)


BENCHMARKS = {
    "reward_step": _module("reward_step"),
    "pipeline": _module("pipeline"),
    "load": _module("load"),
    "checkpoint_io": _script_benchmark("benchmarks.checkpoint_io", ["--repeats", "2"],
                                       ["--repeats", "5"]),
    "scaling": _scaling,
    "device_cache": _module("device_cache"),
    "sac": _module("sac"),
    "accelerator": _reporting_module("accelerator"),
    "agent_suite": _module("agent_suite"),
}
OPTIONAL = ("device_cache", "sac")  # written separately; skipped when not importable
REPORTING = ("accelerator",)  # take on_partial


def machine_info():
  """CPU model, core count, memory, JAX devices (and GPU name), torch version."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
  try:
    info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
  except (ValueError, OSError):
    pass
  import jax  # pylint: disable=import-outside-toplevel
  info.update(jax=jax.__version__, jax_backend=jax.default_backend(),
              jax_devices=[str(d) for d in jax.devices()])
  gpus = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
  info["gpu"] = gpus[0] if gpus else None
  try:  # the version only: importing torch here would fix its OpenMP settings too early
    info["torch"] = importlib.metadata.version("torch")
  except importlib.metadata.PackageNotFoundError:
    info["torch"] = None
  info["glibc_tunables"] = os.environ.get("GLIBC_TUNABLES", "")
  info["date"] = time.strftime("%Y-%m-%d")
  info["load_average_1m"] = os.getloadavg()[0]  # other work sharing the cores when this started
  return info


def run_one(name, quick, on_partial=None):
  if name in OPTIONAL:
    try:
      importlib.import_module(f"benchmarks.{name}")
    except ImportError:
      return {"skipped": "module not available"}
  start = time.perf_counter()
  try:
    if name in REPORTING:
      result = BENCHMARKS[name](quick, on_partial=on_partial)
    else:
      result = BENCHMARKS[name](quick)
  except Exception as e:  # pylint: disable=broad-except  (one failure must not lose the others)
    traceback.print_exc()
    return {"error": f"{type(e).__name__}: {e}"}
  if isinstance(result, dict) and "wall_s" not in result:
    result = dict(result, wall_s=round(time.perf_counter() - start, 1))
  return result


def _figures(result, prefix=""):
  """(name, value) of the scalar figures, one nested level deep, for the printed table."""
  for key, value in result.items():
    if isinstance(value, dict) and not prefix:
      yield from _figures(value, key + ".")
    elif value is None or isinstance(value, (int, float, str)):
      yield prefix + key, value


def table(results):
  rows = [(name, key, value) for name, result in results.items() if name != "machine"
          for key, value in _figures(result)]
  width = max([len(name) + len(key) + 2 for name, key, _ in rows] + [20])
  lines = [f"{'benchmark  figure':<{width}}  value", "-" * (width + 12)]
  for name, key, value in rows:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    lines.append(f"{name + '  ' + key:<{width}}  {text}")
  return "\n".join(lines)


def write(results, path):
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes in all")
  parser.add_argument("--only", default="",
                      help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
  parser.add_argument("--out", default="", help="where to write the JSON result")
  args = parser.parse_args()
  names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
  unknown = sorted(set(names) - set(BENCHMARKS))
  if unknown:
    parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
  if "accelerator" in names:  # it trains in child processes on the same GPU: no preallocation
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  results = {"machine": machine_info()}
  for name in names:
    print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
    partial = None
    if args.out:  # a reporting benchmark's figures so far, written as they come
      partial = lambda figures, name=name: write(dict(results, **{name: figures}), args.out)
    results[name] = run_one(name, args.quick, partial)
    if args.out:  # partial results survive an interrupted run
      write(results, args.out)
  print(table(results))


if __name__ == "__main__":
  main()
