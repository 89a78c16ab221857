"""What every part of benchmarks/accelerator.py shares: progress lines, a part's failure recorded
instead of raised, its time budget, and freeing the devices between parts."""

import gc
import sys
import traceback

import jax

from benchmarks import common
from rrd_jax.run import lifecycle


def log(message):
  print(f"[accelerator] {message}", file=sys.stderr, flush=True)


def guarded(out, key, fn):
  """out[key] = fn(), or {"error": ...} when it raises (the traceback goes to stderr)."""
  try:
    out[key] = fn()
  except Exception as e:  # pylint: disable=broad-except  (one failure must not lose the rest)
    traceback.print_exc()
    log(f"{key} failed: {common.error_text(e)}")
    out[key] = {"error": common.error_text(e)}
  return out[key]


def guarded_fill(out, key, fill):
  """fill(out[key]) on a dict already in `out` (so what it wrote survives); an exception adds
  {"error": ...} to it."""
  part = out.setdefault(key, {})
  try:
    fill(part)
  except Exception as e:  # pylint: disable=broad-except  (one failure must not lose the rest)
    traceback.print_exc()
    log(f"{key} failed: {common.error_text(e)}")
    part["error"] = common.error_text(e)
  return part


def fill_each(out, fills, min_s, budget, save):
  """guarded_fill(out, name, fill) for each (name, fill) in turn, each followed by
  release_memory() and save(); a name is skipped when less than min_s of the budget is left."""
  for name, fill in fills:
    if budget.remaining() < min_s:
      out[name] = skipped_for_budget(budget)
      continue
    guarded_fill(out, name, fill)
    release_memory()
    save()


class Budget:
  """The run's time budget: seconds elapsed since it started and seconds left."""

  def __init__(self, budget_s):
    self.clock, self.budget_s = lifecycle.Clock(), budget_s

  def elapsed(self):
    return self.clock.elapsed()

  def remaining(self):
    return self.budget_s - self.elapsed()


def skipped_for_budget(budget):
  return {"skipped": f"{budget.remaining():.0f} s of the budget left"}


def tensorflow_available():
  return common.has_module("tensorflow") and common.has_module("tensorflow_datasets")


def release_memory():
  """Frees what a finished part left on the devices (torch's cache, compiled programs)."""
  gc.collect()
  torch = sys.modules.get("torch")
  if torch is not None:  # imported by part a
    if torch.cuda.is_available():
      torch.cuda.empty_cache()
    torch._dynamo.reset()  # pylint: disable=protected-access
  jax.clear_caches()
