"""Runs the benchmarks and writes one JSON object: {"machine": ..., "provenance": {commit, command,
machine}, NAME: figures, ...}.

python -m benchmarks.run [--quick | --smoke] [--only NAME[,NAME]] [--out RESULT.json]
    [--keep-going | --no-keep-going]
python -m benchmarks.run --report [REPORT ARGS...]   # benchmarks/report.py's tables

Each benchmark is a module with `run(size)` (size "full", "quick" or "smoke"), imported only when
it runs; one that cannot be imported is reported as {"skipped": "module not available"}, one that
raises as {"error": "..."}. --quick shrinks every benchmark (and skips `scaling`) to finish in
minutes on a 2-core CPU; --smoke runs every benchmark at tiny sizes with one repeat (seconds
each; tests/test_benchmarks_smoke.py), to check that each runs and writes its figures.
The PyTorch-side benchmarks need `pip install -r benchmarks/requirements.txt`; without torch
their PyTorch figures are None and the JAX side still runs.
`accelerator` (benchmarks/accelerator.py: one GPU in <= 8 minutes) also reports its figures as they
come, so with --out an interrupted run still leaves them in RESULT.json.

Exit status: 1 when any benchmark it ran failed (raised, or recorded an "error" in one of its
parts; the table marks those rows FAILED), else 0. With --keep-going (the default) the others still
run after a failure; --no-keep-going stops at the first.
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

from benchmarks import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script_benchmark(module, args_by_size):
  """A `run(size)` for the benchmarks that are command-line scripts writing --out JSON;
  args_by_size: {size: the script's arguments}."""

  def run(size):
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "result.json")
      subprocess.run([sys.executable, "-m", module, *args_by_size[common.size_name(size)],
                      "--out", out], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                     env=dict(os.environ, PYTHONPATH=ROOT))
      with open(out, encoding="utf-8") as f:
        return json.load(f)

  return run


def _scaling(size):
  if common.size_name(size) == "quick":
    return {"skipped": "not run with --quick"}
  return _script_benchmark("benchmarks.scaling", {"smoke": ["--smoke"], "full": []})(size)


def _module(name):
  return lambda size: importlib.import_module(f"benchmarks.{name}").run(size)


def _reporting_module(name):
  """A benchmark whose run(size, on_partial) hands over its figures so far after each part."""
  return lambda size, on_partial=None: importlib.import_module(f"benchmarks.{name}").run(
      size, on_partial=on_partial)


BENCHMARKS = {
    "reward_step": _module("reward_step"),
    "pipeline": _module("pipeline"),
    "load": _module("load"),
    "checkpoint_io": _script_benchmark("benchmarks.checkpoint_io", {
        "smoke": ["--repeats", "1"], "quick": ["--repeats", "2"], "full": ["--repeats", "5"]}),
    "scaling": _scaling,
    "device_cache": _module("device_cache"),
    "sac": _module("sac"),
    "accelerator": _reporting_module("accelerator"),
    "agent_suite": _module("agent_suite"),
}
META = ("machine", "provenance")  # the keys of a run's JSON that are not benchmarks
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


def _git(*args):
  try:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def provenance(argv, machine):
  """Where the figures come from (benchmarks/report.py heads its tables with it): the commit
  (and whether tracked files had uncommitted changes), the command and the machine in words."""
  commit = _git("rev-parse", "--short", "HEAD")
  if commit and _git("status", "--porcelain", "--untracked-files=no"):
    commit += " + uncommitted changes"
  gpu = machine.get("gpu") or "no accelerator"
  words = (f"{machine.get('cpu')}, {machine.get('cores')} cores, "
           f"{machine.get('memory_gb')} GB, {gpu}; {machine.get('date')}")
  return {"commit": commit, "command": " ".join(["python -m benchmarks.run", *argv]),
          "machine": words}


def run_one(name, size, on_partial=None):
  """BENCHMARKS[name]'s figures at `size`, {"error": ...} if it raised."""
  if name in OPTIONAL:
    try:
      importlib.import_module(f"benchmarks.{name}")
    except ImportError:
      return {"skipped": "module not available"}
  start = time.perf_counter()
  try:
    if name in REPORTING:
      result = BENCHMARKS[name](size, on_partial=on_partial)
    else:
      result = BENCHMARKS[name](size)
  except Exception as e:  # pylint: disable=broad-except  (one failure must not lose the others)
    traceback.print_exc()
    return {"error": common.error_text(e)}
  if isinstance(result, dict) and "wall_s" not in result:
    result = dict(result, wall_s=round(time.perf_counter() - start, 1))
  return result


def errors(result, prefix=""):
  """["path: error", ...] of every "error" a result recorded, at any depth."""
  if isinstance(result, list):
    return [e for i, item in enumerate(result) for e in errors(item, f"{prefix}{i}.")]
  if not isinstance(result, dict):
    return []
  found = [f"{prefix}error: {result['error']}"] if "error" in result else []
  return found + [e for key, value in result.items() if key != "error"
                  for e in errors(value, f"{prefix}{key}.")]


def _figures(result, prefix=""):
  """(name, value) of the scalar figures, one nested level deep, for the printed table."""
  for key, value in result.items():
    if isinstance(value, dict) and not prefix:
      yield from _figures(value, key + ".")
    elif value is None or isinstance(value, (int, float, str)):
      yield prefix + key, value


def benchmark_results(results):
  """(name, figures) of each benchmark in a run's results (not machine or provenance)."""
  return [(name, result) for name, result in results.items() if name not in META]


def table(results):
  """The scalar figures, one row each; a failed benchmark's rows start with FAILED."""
  failed = {name for name, result in benchmark_results(results) if errors(result)}
  rows = [(("FAILED " if name in failed else "") + name, key, value)
          for name, result in benchmark_results(results) for key, value in _figures(result)]
  width = max([len(name) + len(key) + 2 for name, key, _ in rows] + [20])
  lines = [f"{'benchmark  figure':<{width}}  value", "-" * (width + 12)]
  for name, key, value in rows:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    lines.append(f"{name + '  ' + key:<{width}}  {text}")
  for name in sorted(failed):
    lines.append(f"FAILED {name}: " + "; ".join(errors(results[name]))[:2000])
  return "\n".join(lines)


def write(results, path):
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)


def _parser():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_size_flags(parser)
  parser.add_argument("--only", default="",
                      help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
  parser.add_argument("--out", default="", help="where to write the JSON result")
  parser.add_argument("--keep-going", action=argparse.BooleanOptionalAction, default=True,
                      help="run the other benchmarks after one fails (the default)")
  parser.add_argument("--report", nargs=argparse.REMAINDER, metavar="ARGS",
                      help="instead of running anything: benchmarks/report.py's main(ARGS), "
                           "every argument after --report")
  return parser


def report(argv):
  """benchmarks.report.main(argv) (imported only here): its exit status, 0 if it returns None."""
  return importlib.import_module("benchmarks.report").main(list(argv)) or 0


def run_all(names, size, out="", keep_going=True, argv=()):
  """{"machine": ..., "provenance": ..., name: figures} of `names`, written to `out` as they
  come; argv: the command's arguments (for the provenance)."""
  machine = machine_info()
  results = {"machine": machine, "provenance": provenance(argv, machine)}
  for name in names:
    print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
    partial = None
    if out:  # a reporting benchmark's figures so far, written as they come
      partial = lambda figures, name=name: write(dict(results, **{name: figures}), out)
    results[name] = run_one(name, size, partial)
    if out:  # partial results survive an interrupted run
      write(results, out)
    if errors(results[name]) and not keep_going:
      print(f"[benchmarks] {name} failed; stopping (--no-keep-going)", file=sys.stderr)
      break
  return results


def main(argv=None):
  """Returns the exit status: 1 if a benchmark failed."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if "--report" in argv:  # everything after it is the report's
    index = argv.index("--report")
    if argv[:index]:
      _parser().error("--report takes no other benchmarks.run options before it")
    return report(argv[index + 1:])
  parser = _parser()
  args = parser.parse_args(argv)
  names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
  unknown = sorted(set(names) - set(BENCHMARKS))
  if unknown:
    parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
  if "accelerator" in names:  # it trains in child processes on the same GPU: no preallocation
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  common.prepare(common.size_of(args))
  results = run_all(names, common.size_of(args), args.out, args.keep_going, argv)
  print(table(results))
  return 1 if any(errors(result) for _, result in benchmark_results(results)) else 0


if __name__ == "__main__":
  sys.exit(main())
