"""Progress bars for long work (training, caching, prediction, relabelling)."""

import sys
import time

import tqdm


def progress_bar(total, description, initial=0, enabled=True, unit="step"):
  """tqdm on an interactive terminal (rate and ETA); silent elsewhere (logs carry the progress)."""
  return tqdm.tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True,
                   disable=not (enabled and sys.stderr.isatty()), unit=unit)


def _duration(seconds):
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class LineProgress:
  """Progress for logs written as lines (no terminal, so no bar): "40%, 12.5 step/s, ETA 3m10s".

  The rate counts from the first call (the first interval holds compilation, which would make
  the estimate far too long); until a second call there is only the percentage."""

  def __init__(self, total, unit="step", clock=time.monotonic):
    self.total, self.unit, self.clock, self.first = total, unit, clock, None

  def text(self, done):
    now, percent = self.clock(), f"{100 * done / max(self.total, 1):.0f}%"
    if self.first is None:
      self.first = (now, done)
    start_time, start_done = self.first
    if done <= start_done or now <= start_time:
      return percent
    rate = (done - start_done) / (now - start_time)
    return (f"{percent}, {rate:.3g} {self.unit}/s, "
            f"ETA {_duration(max(self.total - done, 0) / rate)}")
