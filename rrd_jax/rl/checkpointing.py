"""Checkpoints of an online run: the whole learner state AND the replay buffer (orbax).

Under the checkpoint directory, steps/<env_steps>/ holds `learner` and `buffer` (pytrees of arrays)
and `meta` (JSON: env steps, episodes, the config). What resumes: everything that is not an
environment — networks, optimiser states, target critics, temperature, reward model, rng, update
count, the replay buffer with its episode fields and IRCR min/max, and the env-step counter. The
environments' running episodes at save time are not saved: a resumed run resets its environments
(seeded from (seed, env_steps)) and their partial episodes, never in the buffer, are dropped.
"""

import os

import flax
import jax
import orbax.checkpoint as ocp

STEPS_DIR = "steps"


def _items(learner, buffer):
  return {"learner": flax.serialization.to_state_dict(learner),
          "buffer": flax.serialization.to_state_dict(buffer)}


class OnlineCheckpointer:
  def __init__(self, directory, keep=1):
    self.directory = os.path.join(os.path.abspath(os.path.expanduser(directory)), STEPS_DIR)
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True))

  def save(self, env_steps, learner, buffer, meta):
    if self.manager.latest_step() == env_steps:
      return
    items = _items(learner, buffer)
    self.manager.save(env_steps, args=ocp.args.Composite(
        learner=ocp.args.StandardSave(items["learner"]),
        buffer=ocp.args.StandardSave(items["buffer"]), meta=ocp.args.JsonSave(meta)))

  def restore_latest(self, learner, buffer):
    """(learner, buffer, meta) of the latest save, shaped like the given ones; None if none."""
    step = self.manager.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _items(learner, buffer))
    restored = self.manager.restore(step, args=ocp.args.Composite(
        learner=ocp.args.StandardRestore(abstract["learner"]),
        buffer=ocp.args.StandardRestore(abstract["buffer"]), meta=ocp.args.JsonRestore()))
    return (flax.serialization.from_state_dict(learner, restored["learner"]),
            flax.serialization.from_state_dict(buffer, restored["buffer"]), restored["meta"])

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
