"""Shared fixtures (small embedded LIBERO-schema datasets generated once per test session) and the
suite's time budget: the end of every run prints its wall time and the files that took longest
(setup, call and teardown summed per file), so a slow change is seen where it lands."""

import collections
import os
import tempfile
import time

import pytest

from rrd_jax.data import embedded
from rrd_jax.run import compile_cache
from tests.helpers import ROOT

TINY = embedded.EmbeddedParams(num_episodes=16, min_length=6, max_length=14, image_size=40,
                               seed=1, num_shards=3)
SLOWEST_FILES = 12  # how many files the summary lists

_started = time.monotonic()
_seconds_by_file = collections.Counter()


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
  """16 episodes of 6..14 steps, 40x40 JPEG images, in 3 TFRecord shards."""
  return embedded.build_embedded_dataset(str(tmp_path_factory.mktemp("embedded")), TINY)


@pytest.fixture(scope="session")
def repo_root():
  return ROOT


def pytest_runtest_logreport(report):
  """Adds each phase's duration to its file (in the controller too when the run is parallel: the
  workers' reports come back through this hook)."""
  _seconds_by_file[report.nodeid.split("::", 1)[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
  """The run's wall time, test time summed over files (over the workers when parallel) and the
  slowest files."""
  if hasattr(terminalreporter.config, "workerinput"):  # an xdist worker: the controller prints
    return
  wall = time.monotonic() - _started
  total = sum(_seconds_by_file.values())
  write = terminalreporter.write_line
  terminalreporter.section("time budget")
  write(f"wall {wall:.0f} s; test time {total:.0f} s summed over {len(_seconds_by_file)} files")
  for path, seconds in _seconds_by_file.most_common(SLOWEST_FILES):
    write(f"  {seconds:7.1f} s  {path}")


def pytest_configure(config):
  """JAX's persistent compilation cache for the whole session (every worker's in-process
  programs, in one folder that outlives the session): a train step that several tests build
  again, each with a fresh closure, compiles once. The commands the tests start use the config's
  own cache (compile_cache_dir), shared between them the same way."""
  del config
  compile_cache.enable(os.path.join(tempfile.gettempdir(), "rrd_jax_test_compilation"))
