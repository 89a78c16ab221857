"""Metrics to metrics.jsonl and TensorBoard (clu, where tensorflow is installed)."""

import functools
import json
import math
import os
import sys

from rrd_jax.util.errors import full_disk_is_user_error


def read_rows(workdir):
  """The rows of WORKDIR/metrics.jsonl (none if absent), skipping a torn line."""
  path = os.path.join(workdir, "metrics.jsonl")
  rows = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          continue
  return rows


@functools.cache
def _metric_writers():
  """clu.metric_writers, or None (after one warning per process) where tensorflow is missing."""
  try:
    from clu import metric_writers  # pylint: disable=import-outside-toplevel  (needs tensorflow)
  except ImportError:
    print("Warning: tensorflow is not installed, so TensorBoard events are skipped (metrics.jsonl "
          "only); pip install -r requirements.txt installs it.", file=sys.stderr)
    return None
  return metric_writers


def _tensorboard_writer(logdir):
  """clu's SummaryWriter on `logdir`, or None where tensorflow is missing."""
  writers = _metric_writers()
  return None if writers is None else writers.SummaryWriter(logdir)


class MetricsLogger:
  """One JSON object per write in WORKDIR/metrics.jsonl, the same scalars as TensorBoard events
  (skipped where tensorflow is not installed)."""

  def __init__(self, workdir, enabled=True):
    self.enabled = enabled
    if enabled:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
      self._writer = _tensorboard_writer(os.path.join(workdir, "tensorboard"))

  def write(self, step, scalars):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    record = {"step": int(step)}
    record.update({k: (v if math.isfinite(v) else None) for k, v in scalars.items()})
    with full_disk_is_user_error(self._jsonl.name):
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    if self._writer is not None:
      self._writer.write_scalars(int(step), scalars)
      self._writer.flush()

  def write_image(self, step, name, image):
    """One [H, W, 3] uint8 image to TensorBoard (skipped without it)."""
    if self.enabled and self._writer is not None:
      self._writer.write_images(int(step), {name: image[None]})
      self._writer.flush()

  def close(self):
    if self.enabled:
      self._jsonl.close()
      if self._writer is not None:
        self._writer.close()

