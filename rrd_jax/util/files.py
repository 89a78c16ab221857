"""Small files that survive a crash: every JSON file rrd_jax writes goes to a temporary file in the
same directory, is fsynced, and is renamed into place, so a reader sees the old file or the new
one, never a torn one. A reader that meets an empty or invalid file of ours says which file it is
and what to do, in one sentence."""

import contextlib
import json
import os

from rrd_jax.util.errors import full_disk_is_user_error, UserError


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
  """open() for writing `path` atomically: the content appears at `path` only when the block ends
  without an error (a crash or an exception leaves the previous file, if any)."""
  directory = os.path.dirname(os.path.abspath(path))
  partial = f"{path}.tmp"  # one writer per file: the workdir lock, or the tool's own --out
  try:
    with full_disk_is_user_error(path):
      with open(partial, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
      os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  with contextlib.suppress(OSError):  # the rename itself reaches the disk
    fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def write_json(path, value):
  """`value` as indented JSON at `path`, atomically."""
  with atomic_open(path, encoding="utf-8") as f:
    json.dump(value, f, indent=2)


def read_json(path, what, remedy):
  """The JSON at `path`; UserError naming `what` the file is and `remedy` when it is unreadable,
  empty or not JSON (e.g. a file from before atomic writes, torn by a crash)."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    reason = "it is empty" if os.path.exists(path) and not os.path.getsize(path) else (
        e.strerror if isinstance(e, OSError) else "it is not valid JSON")
    raise UserError(f"{what} {path} cannot be read ({reason}); {remedy}") from None
