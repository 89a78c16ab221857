"""Orbax checkpoints of the TrainState (params, optimizer state, step)."""

import os

import jax
import orbax.checkpoint as ocp


def manager(directory, every_steps=0):
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=max(1, every_steps) if every_steps else 1, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.expanduser(directory)), options=options)


def _savable(state):
  return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


def save(checkpoint_manager, state, force=False):
  saved = checkpoint_manager.save(int(jax.device_get(state.step)),
                                  args=ocp.args.StandardSave(_savable(state)), force=force)
  return saved


def restore(directory, state, step=None):
  """Restores into the structure of `state` (from the latest checkpoint unless `step`)."""
  with manager(directory) as checkpoint_manager:
    step = checkpoint_manager.latest_step() if step is None else step
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _savable(state))
    restored = checkpoint_manager.restore(step, args=ocp.args.StandardRestore(abstract))
  return state.replace(params=restored["params"], opt_state=restored["opt_state"],
                       step=restored["step"])
