"""User-facing errors: one sentence, exit code 2, no traceback."""

import contextlib
import errno
import functools
import re
import sys


class UserError(Exception):
  """Bad input from the user (path, dataset, config value). Printed as one sentence."""


EXIT_USER_ERROR = 2


class Interrupted(Exception):
  """A run stopped on a signal after saving (rrd_jax/run/interrupt.py): its message is printed as one
  line and the process exits with `exit_code` (the shell's 128 + signal number)."""

  def __init__(self, message, exit_code):
    super().__init__(message)
    self.exit_code = exit_code


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(path, needed=None, free=None, resumes=""):
  """The UserError for a write under `path` that does not fit on its disk."""
  detail = "" if needed is None else (f": it needs about {needed / 2**20:.1f} MiB"
                                      + ("" if free is None else f", {free / 2**20:.1f} MiB are free"))
  return UserError(f"no space left on the disk for {path}{detail}; free some space and rerun the "
                   f"same command{resumes}")


def _chain(error):
  while error is not None:
    yield error
    error = error.__cause__ or error.__context__


def disk_full_path(error):
  """Where a write failed for want of space (ENOSPC / EDQUOT anywhere in `error`'s chain, or
  tensorstore's text for it, as orbax's asynchronous saves report it), else None."""
  for e in _chain(error):
    if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
      return e.filename or "an output file"
    text = str(e)
    if "No space left on device" in text or "Disk quota exceeded" in text:
      found = (re.search(r'Failed writing: "([^"]+)"', text) or re.search(r'file "([^"]+)"', text)
               or re.search(r"(/[^\s\";]+); (?:No space|Disk quota)", text))  # tensorstore, TF
      return found.group(1) if found else "an output file"
  return None


@contextlib.contextmanager
def full_disk_is_user_error(path=None, resumes=lambda: ""):
  """Inside the block, a write that finds the disk full (disk_full_path) becomes the one-sentence
  UserError naming `path` (default: the path the error names), followed by resumes(); any other
  error passes unchanged."""
  try:
    yield
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (only a full disk is the user's to fix)
    found = disk_full_path(e)
    if found is None:
      raise
    raise disk_full_error(path or found, resumes=resumes()) from None


def cli_main(fn):
  """Wraps a CLI `main(argv)`: a UserError prints `error: <message>` and exits 2 (so does a write
  that found the disk full, whatever raised it)."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      with full_disk_is_user_error():
        return fn(*args, **kwargs)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(EXIT_USER_ERROR)
    except Interrupted as e:
      print(e, file=sys.stderr)
      sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a training loop: no traceback
      print("interrupted by Ctrl-C.", file=sys.stderr)
      sys.exit(130)

  return wrapper


def exit_with_error(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)


def unknown_config_field_message(error, argv):
  """ml_collections raises AttributeError/KeyError("'field'") for an unknown --config.FIELD."""
  field = str(error).strip("\"'")
  flagged = [a.split("=", 1)[0] for a in argv
             if a.startswith("--config.") and field in a.split("=", 1)[0].split(".")]
  return f"unknown config field {field!r}" + (f" in {flagged[0]}" if flagged
                                               else " in the --config.* overrides")


def _last_line(text):
  """Flag errors may embed a traceback (e.g. a config file's get_config raising): keep its last line."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if any(line.startswith("Traceback") for line in lines):
    return f"{lines[0].rstrip(':')}: {lines[-1]}"
  return " ".join(lines)


def _own_flags_in_help(flag_values):
  """absl's --help lists the flags of the module named by sys.argv[0]. Run as a console script
  (rrd-train) that path names no module, so this tool's flags (those its rrd_jax modules define)
  are registered under it too."""
  program = sys.argv[0]
  by_module = flag_values.flags_by_module_dict()
  listed = {flag.name for flag in by_module.get(program, [])}
  for module, module_flags in list(by_module.items()):
    if module.startswith("rrd_jax") or module == "__main__":
      for flag in module_flags:
        if flag.name not in listed:
          flag_values.register_flag_by_module(program, flag)
          listed.add(flag.name)


def _drop_disk_full_records(record):
  """A logging filter: orbax (and asyncio, for its tasks) log the writer threads' errors before
  orbax re-raises them in the main thread, where a full disk becomes one sentence; the log
  records of a full disk are dropped."""
  error = record.exc_info[1] if record.exc_info else None
  return not ((error is not None and disk_full_path(error))
              or "No space left on device" in record.getMessage())


def _unraisable_hook(default):
  """sys.unraisablehook without one benign race: after a failed orbax save, tensorstore still
  completes the save's other writes onto orbax's closed event loop (`Event loop is closed`)."""

  def hook(unraisable):
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
      default(unraisable)

  return hook


def run_app(main, positional=None):
  """absl `app.run` for our CLIs: flag errors and UserErrors print one sentence and exit 2,
  and library INFO logging (orbax, absl) is kept off the console. positional: the name of a
  string flag that one positional argument may set instead (`tool PATH` == `tool --name=PATH`)."""
  from absl import app, flags, logging  # pylint: disable=import-outside-toplevel

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      exit_with_error(_last_line(str(e)))
    except (AttributeError, KeyError) as e:  # ml_collections: an unknown --config.FIELD
      exit_with_error(unknown_config_field_message(e, argv))

  def wrapped(argv):
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().addFilter(_drop_disk_full_records)  # (every logger reaches it)
    sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
    if positional and len(argv) == 2 and not flags.FLAGS[positional].present:
      flags.FLAGS[positional].value = argv.pop()
    if len(argv) > 1:
      raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    return main(argv)

  _own_flags_in_help(flags.FLAGS)
  app.run(cli_main(wrapped), flags_parser=parse)
