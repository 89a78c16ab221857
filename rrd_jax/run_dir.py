"""A run's working directory: new, resumed, or refused (or archived on request), never clobbered.

Rerunning the same command with the same --workdir resumes it. A workdir whose config.json holds a
different config is refused; with checkpoint.overwrite=True the old run is moved aside into
WORKDIR/archived/<time>/ (and its checkpoint directory, if elsewhere, to <dir>.archived-<time>),
so nothing is deleted.
"""

import json
import os
import shutil
import time

from rrd_jax import config_utils, metrics
from rrd_jax.errors import UserError

# Fields that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES = ("train.num_steps", "train.total_env_steps", "checkpoint.overwrite",
                     "checkpoint.restore",
                     "profile.start_step", "profile.num_steps", "profile.dir", "profile.server_port")
RUN_FILES = ("config.json", "metrics.jsonl", "final_metrics.json", "tensorboard", "checkpoints")


def _flatten(tree, prefix=""):
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def config_differences(old_config, new_config):
  """["field: old -> new", ...] for fields that differ, ignoring RESUMABLE_CHANGES."""
  old = _flatten(json.loads(old_config.to_json_best_effort()))
  new = _flatten(json.loads(new_config.to_json_best_effort()))
  return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
          if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]


def _archive(workdir, facts):
  stamp = time.strftime("%Y%m%d-%H%M%S")
  target = os.path.join(workdir, "archived", stamp)
  os.makedirs(target)
  for name in RUN_FILES:
    if os.path.exists(os.path.join(workdir, name)):
      shutil.move(os.path.join(workdir, name), os.path.join(target, name))
  checkpoint_dir = facts.get("checkpoint_dir")
  if checkpoint_dir and os.path.exists(checkpoint_dir):
    shutil.move(checkpoint_dir, f"{checkpoint_dir.rstrip(os.sep)}.archived-{stamp}")
  return target


def prepare(workdir, config, log=print, decide=True):
  """Creates or checks `workdir`; returns (absolute workdir, resume?).

  In a multi-process job only process 0 decides (decide=True); the others get its answer.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not decide:
    return workdir, False
  if os.path.exists(os.path.join(workdir, "config.json")):
    old_config, facts = config_utils.read_run_config(workdir)
    differences = config_differences(old_config, config)
    if not differences:
      return workdir, True
    if not config.checkpoint.overwrite:
      raise UserError(f"workdir {workdir} holds a run with a different config "
                      f"({'; '.join(differences[:3])}{'; ...' if len(differences) > 3 else ''}); "
                      "choose a new --workdir, or pass --config.checkpoint.overwrite=True to move "
                      "the old run aside")
    log(f"Moved the previous run in {workdir} to {_archive(workdir, facts)}.")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir} exists and is not a directory")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"workdir {workdir} cannot be created ({e.strerror})") from None
  if not os.access(workdir, os.W_OK):
    raise UserError(f"workdir {workdir} is not writable")
  return workdir, False


def truncate_metrics(workdir, last_step):
  """Drops metrics.jsonl rows after `last_step` (and a torn last line) before a resumed run."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  kept = [json.dumps(row) for row in metrics.read_rows(workdir) if row.get("step", 0) <= last_step]
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in kept))
  os.replace(path + ".tmp", path)
