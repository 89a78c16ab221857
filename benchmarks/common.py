"""Shared by the benchmarks: where a result goes, and their command line."""

import argparse
import json


def emit(result, out_path=""):
  """Prints the result as JSON and, with an output path, writes it there too."""
  print(json.dumps(result, indent=2))
  if out_path:
    with open(out_path, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)


def benchmark_main(name, run, doc):
  """`python -m benchmarks.NAME [--quick] [--out F]`: runs run(quick), emits {machine, NAME: ...}."""
  parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  from benchmarks.run import machine_info  # pylint: disable=import-outside-toplevel
  emit({"machine": machine_info(), name: run(args.quick)}, args.out)
