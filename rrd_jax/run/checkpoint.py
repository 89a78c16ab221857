"""Orbax checkpoints of a run (both loops): each save is a dict of named pytrees plus a JSON `meta`.

Layout under the checkpoint directory:
  steps/<step>/  periodic and final saves (the newest `keep` are kept)
  best/<step>/   the save with the lowest eval/loss so far (when keep_best)
The reward model saves {"state": its TrainState's params, opt_state and step}; the agent saves
{"learner": ..., "buffer": ...} (rrd_jax/rl/agent_loop.py says what resumes). `meta` holds what
a loop needs besides arrays (the sampler's seed and next step, env steps) and the resolved config.
Saves are asynchronous in single-process jobs and atomic: orbax writes into a temporary directory
and renames it when complete, so a crash mid-save leaves nothing that restore would pick up.
"""

import json
import os
import shutil
import sys
import time

import jax
import orbax.checkpoint as ocp

from rrd_jax.util.errors import disk_full_error, full_disk_is_user_error, UserError

STEPS_DIR = "steps"
BEST_DIR = "best"
BEST_METRIC = "eval/loss"
SPACE_MARGIN = 2**20  # bytes a save needs beyond its arrays and meta (orbax's metadata files)


def _warn(message):
  print(message, file=sys.stderr)


def _save_args(items, meta):
  args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
  return ocp.args.Composite(meta=ocp.args.JsonSave(meta), **args)


def _restore_args(items):
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, items)
  args = {name: ocp.args.StandardRestore(tree) for name, tree in abstract.items()}
  return ocp.args.Composite(meta=ocp.args.JsonRestore(), **args)


def _manager(path, *, create=True, keep=None, best=False):
  # Several processes save synchronously: two managers' asynchronous saves in flight at once
  # can reach orbax's cross-process barriers in different orders and deadlock.
  options = dict(max_to_keep=keep, create=create, cleanup_tmp_directories=create,
                 enable_async_checkpointing=jax.process_count() == 1)
  if best:
    options.update(best_fn=lambda metrics: metrics[BEST_METRIC], best_mode="min",
                   keep_checkpoints_without_metrics=False)
  return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(**options))


class Checkpointer:
  """A run's checkpoint managers: steps/ (periodic and final saves) and optionally best/."""

  def __init__(self, directory, *, keep=3, keep_best=False):
    directory = os.path.abspath(os.path.expanduser(directory))
    self.steps = _manager(os.path.join(directory, STEPS_DIR), keep=keep)
    self.best = _manager(os.path.join(directory, BEST_DIR), keep=1, best=True) if keep_best else None

  def _save(self, manager, step, items, meta, **kwargs):
    """One save at a time. A save that does not fit on the disk is refused before it starts (the
    space check, single-process jobs) or, failing in flight, ends the run with the same sentence;
    either way the saves already complete stay intact."""
    # orbax re-raises its asynchronous writers' errors here: a full disk becomes one sentence
    with full_disk_is_user_error(resumes=self._resumes):
      for other in (self.steps, self.best):
        if other is not None:
          other.wait_until_finished()
      if jax.process_count() == 1:
        shortfall = _space_shortfall(os.fspath(manager.directory), items, meta)
        if shortfall:
          raise disk_full_error(os.fspath(manager.directory), *shortfall, self._resumes())
      manager.save(step, args=_save_args(items, meta), force=True, **kwargs)

  def _resumes(self):
    """" (it resumes from step N)" for a disk-full sentence: the newest save complete on disk."""
    self.steps.reload()
    latest = self.steps.latest_step()
    return f" (it resumes from step {latest})" if latest is not None else ""

  def save(self, step, items, meta):
    """Saves `items` (a dict of pytrees) at `step` unless that step is saved already."""
    if self.steps.latest_step() != step:
      self._save(self.steps, step, items, meta)

  def save_best(self, step, items, meta, eval_loss):
    """Keeps this save in best/ if its eval/loss is the lowest so far."""
    if self.best is not None and step not in self.best.all_steps():
      self._save(self.best, step, items, meta, metrics={BEST_METRIC: float(eval_loss)})

  def latest_step(self):
    return self.steps.latest_step()

  def restore_latest(self, items, warn=_warn):
    """(items, meta) of the newest save that restores cleanly, shaped like `items`; None if there
    is none. A save that fails to restore (a torn or truncated file) is named in one warning line
    and moved aside into CHECKPOINT_DIR/corrupt/ (never deleted), and the next newest is tried.
    Multi-process jobs stop with one sentence instead (their processes must agree on the step)."""

    def failed(step, reason):
      if jax.process_count() > 1:
        raise UserError(f"checkpoint step {step} in {self.steps.directory} cannot be restored "
                        f"({reason}); move it aside and rerun")
      moved = _move_aside(self.steps.directory, step)
      warn(f"warning: checkpoint step {step} cannot be restored ({reason}); moved it to {moved} "
           "and trying the previous one.")
      self.steps.reload()
      if self.best is not None and step in self.best.all_steps():
        _move_aside(self.best.directory, step)
        self.best.reload()

    return _first_restorable(self.steps, sorted(self.steps.all_steps(), reverse=True), items,
                             failed)

  def close(self):
    """Waits for the save in flight, then closes; a failed in-flight save raises like _save."""
    try:
      with full_disk_is_user_error(resumes=self._resumes):
        for manager in (self.steps, self.best):
          if manager is not None:
            manager.wait_until_finished()
    finally:
      for manager in (self.steps, self.best):
        if manager is not None:
          manager.close()


def _space_shortfall(directory, items, meta):
  """(bytes needed, bytes free) when the disk under `directory` has less free space than a save of
  `items` and `meta` needs (its uncompressed bytes plus SPACE_MARGIN: an upper bound), else None."""
  needed = sum(int(getattr(leaf, "nbytes", 8)) for leaf in jax.tree.leaves(items))
  needed += len(json.dumps(meta)) + SPACE_MARGIN
  existing = directory
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  free = shutil.disk_usage(existing).free
  return (needed, free) if free < needed else None


def _first_restorable(manager, steps, items, failed):
  """(items, meta) of the first of `steps` that restores into `items`' structure, else None;
  failed(step, reason) hears of each one that does not (and may raise)."""
  for step in steps:
    try:
      restored = manager.restore(step, args=_restore_args(items))
    except Exception as e:  # pylint: disable=broad-except  (orbax and tensorstore raise many kinds)
      failed(step, _first_line(e))
      continue
    return {name: restored[name] for name in items}, restored["meta"]
  return None


def _first_line(error):
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _move_aside(manager_directory, step):
  """Moves a step directory of a manager (steps/ or best/) to <checkpoint dir>/corrupt/."""
  manager_directory = os.fspath(manager_directory)
  target = os.path.join(os.path.dirname(manager_directory), "corrupt",
                        f"{os.path.basename(manager_directory)}-{step}-{int(time.time())}")
  os.makedirs(os.path.dirname(target), exist_ok=True)
  shutil.move(os.path.join(manager_directory, str(step)), target)
  return target


def _manager_path(directory, which):
  return os.path.join(os.path.abspath(os.path.expanduser(directory)),
                      BEST_DIR if which == "best" else STEPS_DIR)


def available_steps(directory, which="latest"):
  path = _manager_path(directory, which)
  if not os.path.isdir(path):
    return []
  with _manager(path, create=False) as m:
    return list(m.all_steps())


def restore(directory, items, which="latest", warn=_warn):
  """(items, meta) from a run's checkpoint directory, read only: which = "latest" (the newest save
  that restores cleanly; the ones that do not are named in a warning line each), "best" or a step
  number; None if there is no such save. `items` (a dict of pytrees) gives the structure, dtypes
  and shardings to restore into."""
  path = _manager_path(directory, which)
  if not os.path.isdir(path):
    return None
  with _manager(path, create=False) as m:
    steps = sorted(m.all_steps(), reverse=True)
    if which == "best":  # best/ keeps a single checkpoint
      steps = steps[:1]
    elif which != "latest":
      if int(which) not in steps:
        raise UserError(f"no checkpoint for step {which} in {path}; available steps: "
                        f"{', '.join(map(str, sorted(steps))) or 'none'}")
      steps = [int(which)]

    def failed(step, reason):
      if which != "latest":
        raise UserError(f"checkpoint step {step} in {path} cannot be restored ({reason})")
      warn(f"warning: checkpoint step {step} in {path} cannot be restored ({reason}); using the "
           "previous one.")

    return _first_restorable(m, steps, items, failed)


def train_state_items(state):
  """The items a reward model's TrainState is saved as."""
  return {"state": {"params": state.params, "opt_state": state.opt_state, "step": state.step}}


def restore_train_state(directory, state, which="latest"):
  """(TrainState, meta) restored into `state`'s structure; None if there is no such save."""
  restored = restore(directory, train_state_items(state), which)
  if restored is None:
    return None
  saved = restored[0]["state"]
  return state.replace(params=saved["params"], opt_state=saved["opt_state"],
                       step=saved["step"]), restored[1]
