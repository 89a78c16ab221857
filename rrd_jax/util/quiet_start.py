"""A clean first screen: TensorFlow's import prints two lines of C++ logging on every start ("WARNING:
All log messages before absl::InitializeLog() is called are written to STDERR" and "oneDNN custom
operations are on ..."), which TF_CPP_MIN_LOG_LEVEL no longer silences. `install()` (called when
rrd_jax is imported) makes the first `import tensorflow` run with the process's stderr captured,
then writes back every captured line except those two; any other message still shows."""

import importlib.abc
import importlib.util
import os
import sys
import tempfile

NOISE = ("All log messages before absl::InitializeLog() is called",
         "oneDNN custom operations are on")


def _write_back(data):
  lines = data.decode("utf-8", "replace").splitlines(keepends=True)
  kept = "".join(line for line in lines if not any(n in line for n in NOISE))
  if kept:
    sys.stderr.write(kept)
    sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
  def __init__(self, loader):
    self.loader = loader

  def create_module(self, spec):
    return self.loader.create_module(spec)

  def exec_module(self, module):
    try:
      sys.stderr.flush()
      saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (e.g. a closed stderr): import as is
      self.loader.exec_module(module)
      return
    with tempfile.TemporaryFile() as captured:
      os.dup2(captured.fileno(), 2)
      try:
        self.loader.exec_module(module)
      finally:
        os.dup2(saved, 2)
        os.close(saved)
        captured.seek(0)
        _write_back(captured.read())


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
  """Wraps the loader of the top-level `tensorflow` package, once."""

  def find_spec(self, name, path=None, target=None):
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


def install():
  if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow)
                                                 for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlow())
