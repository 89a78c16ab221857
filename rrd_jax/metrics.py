"""Metrics to metrics.jsonl and TensorBoard (clu), and a progress bar with rate and ETA."""

import json
import math
import os
import sys

import tqdm
from clu import metric_writers


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


class MetricsLogger:
  """One JSON object per write in WORKDIR/metrics.jsonl, the same scalars as TensorBoard events."""

  def __init__(self, workdir, enabled=True):
    self.enabled = enabled
    if enabled:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
      self._writer = metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step, scalars):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    record = {"step": int(step)}
    record.update({k: (v if math.isfinite(v) else None) for k, v in scalars.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    self._writer.write_scalars(int(step), scalars)
    self._writer.flush()

  def write_image(self, step, name, image):
    """One [H, W, 3] uint8 image to TensorBoard."""
    if self.enabled:
      self._writer.write_images(int(step), {name: image[None]})
      self._writer.flush()

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._writer.close()


def progress_bar(total, description, initial=0, enabled=True):
  """tqdm on an interactive terminal (rate and ETA); silent elsewhere (logs carry the progress)."""
  return tqdm.tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True,
                   disable=not (enabled and sys.stderr.isatty()), unit="step")
