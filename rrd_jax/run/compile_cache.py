"""JAX's persistent compilation cache: compiled XLA programs kept on disk between runs, so a second
run of the same shapes (a rerun, a resume, the next seed) skips compilation.
config.compile_cache_dir ("" = off); on by default for the command-line entry points."""

import os
import sys

import jax


def enable(directory):
  """Turns the cache on in `directory` (every program is cached, however quick to compile);
  returns its absolute path, or None when off or when the directory cannot be made (a warning
  line: the run goes on without the cache)."""
  if not directory:
    return None
  path = os.path.abspath(os.path.expanduser(directory))
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    print(f"warning: compile_cache_dir {path} cannot be created ({e.strerror}); compiling "
          "without the persistent cache", file=sys.stderr)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path
