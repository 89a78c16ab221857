"""Orbax checkpoints of a run: the last `keep` periodic saves plus the best by held-out loss.

Layout under the checkpoint directory:
  steps/<step>/  periodic and final saves (the newest `checkpoint.keep` are kept)
  best/<step>/   the save with the lowest eval/loss so far
Each save holds the TrainState (params, optimizer state, step) and a JSON `meta` item (the
sampler's seed and next step, the resolved config). Saves are asynchronous and atomic: orbax
writes into a temporary directory and renames it when complete, so a crash mid-save leaves
nothing that restore would pick up.
"""

import os

import jax
import orbax.checkpoint as ocp

from rrd_jax.errors import UserError

STEPS_DIR = "steps"
BEST_DIR = "best"
BEST_METRIC = "eval/loss"


def _savable(state):
  return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


def _save_args(state, meta):
  return ocp.args.Composite(state=ocp.args.StandardSave(_savable(state)),
                            meta=ocp.args.JsonSave(meta))


class Checkpointer:
  """The run's checkpoint managers (periodic/final, best)."""

  def __init__(self, directory, *, every_steps=0, keep=3, keep_best=True):
    directory = os.path.abspath(os.path.expanduser(directory))
    self.every_steps = every_steps
    # Several processes save synchronously: two managers' asynchronous saves in flight at once
    # can reach orbax's cross-process barriers in different orders and deadlock.
    asynchronous = jax.process_count() == 1
    self.steps = ocp.CheckpointManager(
        os.path.join(directory, STEPS_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             cleanup_tmp_directories=True,
                                             enable_async_checkpointing=asynchronous))
    self.best = None
    if keep_best:
      self.best = ocp.CheckpointManager(
          os.path.join(directory, BEST_DIR),
          options=ocp.CheckpointManagerOptions(
              max_to_keep=1, best_fn=lambda metrics: metrics[BEST_METRIC], best_mode="min",
              keep_checkpoints_without_metrics=False, create=True, cleanup_tmp_directories=True,
              enable_async_checkpointing=asynchronous))

  def _save(self, manager, step, state, meta, **kwargs):
    for other in (self.steps, self.best):  # one save in flight at a time
      if other is not None and other is not manager:
        other.wait_until_finished()
    manager.save(step, args=_save_args(state, meta), **kwargs)

  def maybe_save(self, state, meta, step):
    """A periodic save when `step` is a multiple of every_steps."""
    if self.every_steps and step % self.every_steps == 0:
      self._save(self.steps, step, state, meta)

  def save_final(self, state, meta, step):
    if self.steps.latest_step() != step:
      self._save(self.steps, step, state, meta, force=True)

  def save_if_best(self, state, meta, step, eval_loss):
    if self.best is not None:
      self._save(self.best, step, state, meta, metrics={BEST_METRIC: float(eval_loss)},
                 force=True)

  def close(self):
    for manager in (self.steps, self.best):
      if manager is not None:
        manager.wait_until_finished()
        manager.close()


def is_checkpoint_name(name):
  """"latest", "best" or a step number."""
  return str(name) in ("latest", "best") or str(name).isdigit()


def _manager_path(directory, which):
  return os.path.join(os.path.abspath(os.path.expanduser(directory)),
                      BEST_DIR if which == "best" else STEPS_DIR)


def available_steps(directory, which="latest"):
  path = _manager_path(directory, which)
  if not os.path.isdir(path):
    return []
  with ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False)) as m:
    return list(m.all_steps())


def restore(directory, state, which="latest"):
  """(state, meta) from a checkpoint: which = "latest", "best" or a step number; None if none.

  `state` gives the structure, dtypes and shardings to restore into.
  """
  path = _manager_path(directory, which)
  if not os.path.isdir(path):
    return None
  with ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False)) as m:
    steps = m.all_steps()
    if which in ("latest", "best"):  # best/ keeps a single checkpoint
      step = m.latest_step()
      if step is None:
        return None
    else:
      step = int(which)
      if step not in steps:
        raise UserError(f"no checkpoint for step {step} in {path}; available steps: "
                        f"{', '.join(map(str, sorted(steps))) or 'none'}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _savable(state))
    restored = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                       meta=ocp.args.JsonRestore()))
  saved = restored["state"]
  state = state.replace(params=saved["params"], opt_state=saved["opt_state"], step=saved["step"])
  return state, restored["meta"]
