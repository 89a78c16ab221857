"""Shared by the benchmarks: where a result goes."""

import json


def emit(result, out_path=""):
  """Prints the result as JSON and, with an output path, writes it there too."""
  print(json.dumps(result, indent=2))
  if out_path:
    with open(out_path, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
