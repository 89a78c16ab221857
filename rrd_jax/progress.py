"""Progress bars for long work (training, caching, prediction, relabelling)."""

import sys

import tqdm


def progress_bar(total, description, initial=0, enabled=True, unit="step"):
  """tqdm on an interactive terminal (rate and ETA); silent elsewhere (logs carry the progress)."""
  return tqdm.tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True,
                   disable=not (enabled and sys.stderr.isatty()), unit=unit)
