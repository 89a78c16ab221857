"""Stopping a training loop cleanly on Ctrl-C (SIGINT) or SIGTERM (`timeout`, a cluster's
preemption): the loop finishes the call in flight, saves a checkpoint and exits, so rerunning the
same command resumes exactly there. A second Ctrl-C stops at once, as usual.
"""

import signal
import threading

from rrd_jax.util.errors import Interrupted

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, the shell's


class StopRequests:
  """`with StopRequests() as stop:` ... `if stop.requested:` save and raise stop.interrupted(...).

  Inside the block SIGINT and SIGTERM only set `requested` (the signal's number); the first SIGINT
  also restores Python's default handler, so a second one raises KeyboardInterrupt at once.
  Disabled (enabled=False, e.g. a multi-process job, whose processes could stop at different
  steps) or outside the main thread (where Python cannot install handlers) it changes nothing."""

  def __init__(self, enabled=True):
    self.enabled, self.requested, self._previous = enabled, None, {}

  def _handle(self, signum, frame):
    del frame
    self.requested = self.requested or signum
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.default_int_handler)

  def __enter__(self):
    if self.enabled and threading.current_thread() is threading.main_thread():
      for signum in EXIT_CODES:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
    return False

  def interrupted(self, where, checkpoint_dir, saved, resumes_from=None):
    """The Interrupted to raise once the loop has stopped (and saved, if `saved`) at `where`
    ("step N" / "env step N"); without a save, `resumes_from` names what a rerun starts from."""
    if saved:
      what = (f"saved the run at {where} in {checkpoint_dir}; rerun the same command to resume "
              "from there.")
    else:
      what = (f"not saved at {where} (checkpoint.every_steps=0 and checkpoint.save_final=False)"
              + (f"; a rerun resumes from {resumes_from}." if resumes_from else "."))
    name = signal.Signals(self.requested).name
    return Interrupted(f"stopped by {name}: {what}", EXIT_CODES[self.requested])


def saves_on_stop(checkpoint_config):
  """Whether a stopped run saves where it stands: when checkpoints are on at all."""
  return checkpoint_config.every_steps > 0 or checkpoint_config.save_final
