"""The run lifecycle both training loops share: the reward model's (rrd_jax/train/loop.py) and the
agent's (rrd_jax/rl/agent_loop.py). A loop says what to compute; `Run` does the rest:

- the workdir: new, resumed (the same command rerun), refused (a different config), or archived
  on request (checkpoint.overwrite=True moves the old run into WORKDIR/archived/<time>/; it
  refuses when the old checkpoints live outside the workdir), never clobbered; one trainer at a
  time holds it (WORKDIR/.rrd_jax.lock);
- config.json, the checkpoint directory, the checkpoints and their meta record;
- metrics.jsonl + TensorBoard per run directory, the progress bar;
- Ctrl-C / SIGTERM: save where the run stands and exit with one line;
- the divergence check, the interval clock that keeps evaluation out of the timings;
- final_metrics.json (written at the end, read back when a finished run is rerun).
In a multi-process job process 0 decides, writes files and speaks; every process checkpoints.
"""

import contextlib
import fcntl
import json
import math
import os
import shutil
import time

import jax

from rrd_jax.config import loading
from rrd_jax.run import checkpoint, interrupt, metrics, parallel
from rrd_jax.util import files
from rrd_jax.util.errors import full_disk_is_user_error, UserError
from rrd_jax.util.progress import LineProgress, progress_bar

# Fields that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES = ("train.num_steps", "train.total_env_steps", "checkpoint.overwrite",
                     "compile_cache_dir",
                     "profile.start_step", "profile.num_steps", "profile.dir", "profile.server_port")
RUN_FILES = ("config.json", "metrics.jsonl", "final_metrics.json", "data_stats.json", "tensorboard",
             "checkpoints")
LOCK_FILE = ".rrd_jax.lock"
FINAL_METRICS = "final_metrics.json"


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


def checkpoint_dir(workdir, configured):
  """The absolute checkpoint directory: `configured` (checkpoint.dir, or a run's recorded
  checkpoint_dir) resolved against the workdir, WORKDIR/checkpoints when empty."""
  return os.path.abspath(os.path.join(workdir, os.path.expanduser(configured or "checkpoints")))


def _inside(path, directory):
  return os.path.commonpath([path, directory]) == directory


def _archive(workdir, facts):
  """Moves the run's files into WORKDIR/archived/<time>/; touches nothing outside the workdir."""
  stamp = time.strftime("%Y%m%d-%H%M%S")
  target = os.path.join(workdir, "archived", stamp)
  old_checkpoints = checkpoint_dir(workdir, facts.get("checkpoint_dir"))
  if not _inside(old_checkpoints, workdir):
    raise UserError(f"checkpoint.overwrite=True cannot move the old run's checkpoints in "
                    f"{old_checkpoints}: they are outside the workdir {workdir}; move them "
                    "yourself or choose a new --workdir")
  os.makedirs(target)
  for name in RUN_FILES + (os.path.relpath(old_checkpoints, workdir),):
    if os.path.exists(os.path.join(workdir, name)) and not os.path.exists(
        os.path.join(target, name)):
      os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
      shutil.move(os.path.join(workdir, name), os.path.join(target, name))
  return target


def lock_workdir(workdir):
  """An exclusive lock on WORKDIR/.rrd_jax.lock (with this process's pid in it), held until the
  returned descriptor is closed; the kernel releases it when the process dies, even on kill -9.
  UserError naming the holder's pid when another process holds it. None where the file system
  cannot lock (the run goes on unguarded)."""
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    raise UserError(f"workdir {workdir} is in use by another trainer (pid {holder}); wait for it "
                    "to finish or stop it, or choose another --workdir") from None
  except OSError:
    os.close(fd)
    return None
  try:
    with full_disk_is_user_error(workdir):
      os.ftruncate(fd, 0)
      os.write(fd, f"{os.getpid()}\n".encode())
  except BaseException:
    os.close(fd)
    os.remove(path)
    raise
  return fd


def _make_workdir(workdir):
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir} exists and is not a directory")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"workdir {workdir} cannot be created ({e.strerror})") from None
  if not os.access(workdir, os.W_OK):
    raise UserError(f"workdir {workdir} is not writable")


def _saved_anything(workdir, facts):
  """Whether a run has a checkpoint or a metrics row (one that failed before either, e.g. on its
  first batch, is moved aside for a rerun with another config without asking)."""
  if checkpoint.available_steps(checkpoint_dir(workdir, facts.get("checkpoint_dir"))):
    return True
  return bool(metrics.read_rows(workdir))


def prepare_workdir(workdir, config, log=print):
  """Creates or checks `workdir` and locks it (one trainer per workdir); returns (absolute
  workdir, resume?, the lock's descriptor). A refused workdir is left untouched."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  differences, facts = [], {}
  if os.path.exists(os.path.join(workdir, "config.json")):
    old_config, facts = loading.read_run_config(workdir)
    differences = config_differences(old_config, config)
    if differences and not config.checkpoint.overwrite and _saved_anything(workdir, facts):
      raise UserError(f"workdir {workdir} holds a run with a different config "
                      f"({'; '.join(differences[:3])}{'; ...' if len(differences) > 3 else ''}); "
                      "choose a new --workdir, or pass --config.checkpoint.overwrite=True to move "
                      "the old run aside")
  _make_workdir(workdir)
  lock = lock_workdir(workdir)
  try:
    if differences:
      log(f"Moved the previous run in {workdir} to {_archive(workdir, facts)}.")
  except BaseException:
    if lock is not None:
      os.close(lock)
    raise
  return workdir, bool(facts) and not differences, lock


def truncate_metrics(workdir, last_step):
  """Drops metrics.jsonl rows after `last_step` (and a torn last line) before a resumed run."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  kept = [json.dumps(row) for row in metrics.read_rows(workdir) if row.get("step", 0) <= last_step]
  with files.atomic_open(path, encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in kept))


def crossed(before, after, every):
  """Whether a multiple of `every` lies in (before, after] (an interval boundary was passed)."""
  return every > 0 and after // every > before // every


def check_finite(row, names, where):
  """Raises UserError when one of `names` in `row` is not finite (the run diverged)."""
  for name in names:
    if name in row and not math.isfinite(row[name]):
      raise UserError(f"training diverged: {name} is {row[name]} at {where}")


class Clock:
  """Wall time since the last reset, minus the time spent `excluded()` (evaluation)."""

  def __init__(self):
    self.reset()

  def reset(self):
    self.start, self.excluded_s = time.perf_counter(), 0.0

  @contextlib.contextmanager
  def excluded(self):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.excluded_s += time.perf_counter() - start

  def elapsed(self):
    return max(time.perf_counter() - self.start - self.excluded_s, 1e-9)


class Run:
  """One run's directory, checkpoints, metrics, progress and stop handling (see the module doc).

  unit: what a step is called in messages ("step", "env step").
  """

  def __init__(self, config, workdir, *, unit="step", log=print):
    self.config, self.unit = config, unit
    self.main = parallel.is_main_process()
    self.log = log if self.main else (lambda *_: None)  # process 0 speaks for the job
    self.lock = None  # the workdir lock (process 0)
    path = os.path.abspath(os.path.expanduser(workdir))
    self._existed = os.path.isdir(path)
    if self.main:
      try:
        self.workdir, resume, self.lock = prepare_workdir(workdir, config, log=self.log)
      except BaseException:  # (never another trainer's lock file: only an empty new directory)
        if not self._existed and os.path.isdir(path) and not os.listdir(path):
          os.rmdir(path)  # (e.g. its lock file did not fit on the disk)
        raise
    else:
      self.workdir, resume = path, False
    self.resume = bool(parallel.broadcast_from_main(resume))
    self.checkpoint_dir = checkpoint_dir(self.workdir, config.checkpoint.dir)
    self.dirs, self.loggers, self.bar, self.checkpointer = [self.workdir], [], None, None
    self.clock = Clock()

  # --- files ---
  def write_config(self, facts, members=()):
    """WORKDIR/config.json (the resolved config + run facts), and one per (dir, config) member of
    a population. Paths inside the workdir are recorded relative to the file's directory, so a
    copied or moved workdir is self-contained."""
    if not self.main:
      return

    def relative(path, directory):
      return os.path.relpath(path, directory) if _inside(path, self.workdir) else path

    loading.write_run_config(os.path.join(self.workdir, "config.json"), self.config, dict(
        facts, checkpoint_dir=relative(self.checkpoint_dir, self.workdir)))
    for directory, member_config in members:
      os.makedirs(directory, exist_ok=True)
      loading.write_run_config(os.path.join(directory, "config.json"), member_config, dict(
          facts, checkpoint_dir=relative(self.checkpoint_dir, directory),
          population_workdir=relative(self.workdir, directory)))

  def meta(self, **fields):
    """A checkpoint's JSON record: `fields` plus the resolved config."""
    return {**fields, "config": json.loads(self.config.to_json_best_effort())}

  # --- checkpoints ---
  def restore(self, items, keep, keep_best=False):
    """Opens the checkpoints; (items, meta) of the newest save when resuming, else (items, None)."""
    self.checkpointer = checkpoint.Checkpointer(self.checkpoint_dir, keep=keep, keep_best=keep_best)
    restored = self.checkpointer.restore_latest(items) if self.resume else None
    return restored or (items, None)

  def save(self, step, items, meta):
    self.checkpointer.save(step, items, meta)

  def save_best(self, step, items, meta, eval_loss):
    self.checkpointer.save_best(step, items, meta, eval_loss)

  # --- metrics and progress ---
  def start(self, step, total, dirs=None, description="train", unit="step"):
    """Loggers (one per run directory) and the progress bar, from `step` on; a resumed run's
    metrics rows past `step` are dropped first."""
    self.dirs = list(dirs or [self.workdir])
    if self.resume and self.main:
      for directory in self.dirs:
        truncate_metrics(directory, step)
    self.loggers = [metrics.MetricsLogger(d, enabled=self.main) for d in self.dirs]
    self.bar = progress_bar(total, description, initial=min(step, total), enabled=self.main,
                            unit=unit)
    self.line_progress = LineProgress(total, unit=unit)
    self.clock.reset()

  def quiet(self):
    """Whether the progress bar is off (then the loop logs its progress as lines)."""
    return self.bar.disable

  def progress_text(self, done):
    """For those lines: "40%, 12.5 step/s, ETA 3m10s" (the rate from this process's first line)."""
    return self.line_progress.text(done)

  def finished_results(self, start_step, total):
    """A finished run rerun: each run directory's final_metrics.json row, else None."""
    paths = [os.path.join(d, FINAL_METRICS) for d in self.dirs]
    if start_step < total or not all(map(os.path.exists, paths)):
      return None
    return [files.read_json(path, "the final metrics", "delete it and rerun the same command to "
                            "evaluate the final checkpoint again") for path in paths]

  # --- endings ---
  def stop_requests(self):
    """Ctrl-C / SIGTERM stop at the next call boundary (single-process jobs: several processes
    could stop at different steps)."""
    return interrupt.StopRequests(enabled=jax.process_count() == 1)

  def stopped(self, stop, step, items, meta):
    """Saves the run where it stands (when checkpoints are on at all), closes it and returns the
    Interrupted to raise, whose one line says what a rerun resumes from."""
    saving = interrupt.saves_on_stop(self.config.checkpoint)
    if saving:
      self.save(step, items, meta)
    latest = self.checkpointer.latest_step()
    self.close()
    return stop.interrupted(f"{self.unit} {step}", self.checkpoint_dir, saving,
                            resumes_from=f"{self.unit} {latest}" if latest else "the start")

  def finish(self, step, items, meta, rows):
    """The final save (checkpoint.save_final), then final_metrics.json: one row per run dir."""
    if self.config.checkpoint.save_final:
      self.save(step, items, meta)
    self.close()
    if self.main:
      for directory, row in zip(self.dirs, rows):
        files.write_json(os.path.join(directory, FINAL_METRICS), row)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    """A run that fails still closes: in-flight saves finish, logs are flushed (a failure while
    closing gives way to the one being raised); one that failed before writing anything leaves
    nothing behind, not even its lock file."""
    if exc_type is not None:
      with contextlib.suppress(Exception):
        self.close()
      if self.main and os.path.isdir(self.workdir) and os.listdir(self.workdir) == [LOCK_FILE]:
        os.remove(os.path.join(self.workdir, LOCK_FILE))  # this run's own lock
        if not self._existed:
          os.rmdir(self.workdir)
    return False

  def close(self):
    """Closes the progress bar, checkpoints (waiting for the save in flight), loggers and lock,
    each even when an earlier one fails; then raises the first failure."""
    closers = [c for c in (self.bar, self.checkpointer, *self.loggers) if c is not None]
    lock = self.lock
    self.bar, self.checkpointer, self.loggers, self.lock = None, None, [], None
    failure = None
    for closer in closers:
      try:
        closer.close()
      except Exception as e:  # pylint: disable=broad-except
        failure = failure or e
    if lock is not None:
      os.close(lock)  # releases the workdir
    if failure is not None:
      raise failure
