"""rrd_jax.data.describe: its numbers vs build_index, the constant-return warning, the plot, errors."""

import collections
import concurrent.futures
import os
import subprocess
import sys

import numpy as np
import pytest

from rrd_jax.data import libero_hdf5, rlds
from rrd_jax.data import describe as inspect_lib
from rrd_jax.data import returns as returns_lib
from rrd_jax.util.errors import UserError
from tests import hdf5_demos
from tests.test_cli_errors import message_lines


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
  """LIBERO-like demos converted from HDF5: every return is 1."""
  root = tmp_path_factory.mktemp("inspect")
  demo_dir = hdf5_demos.write_demo_dir(str(root / "hdf5"))
  return libero_hdf5.convert(demo_dir, str(root / "out"), image_size=16,
                                     log=lambda *_: None)


def test_numbers_match_build_index(tiny_dataset_dir):
  lines = []
  summary = inspect_lib.inspect_dataset(tiny_dataset_dir, log=lines.append)
  index = rlds.build_index(rlds.open_builder(tiny_dataset_dir), rlds.FeatureKeys())
  assert summary["episodes"] == len(index) == 16
  assert summary["steps"] == int(index.lengths.sum())
  assert summary["length"] == {"min": index.lengths.min(), "mean": index.lengths.mean(),
                               "median": np.median(index.lengths), "max": index.lengths.max()}
  assert summary["return"]["min"] == index.returns.min()
  assert summary["return"]["max"] == index.returns.max()
  assert summary["return"]["mean"] == pytest.approx(index.returns.mean())
  assert summary["return"]["std"] == pytest.approx(index.returns.std())
  assert summary["return"]["distinct"] == len(np.unique(index.returns)) > 1
  assert dict(summary["instructions"]) == dict(collections.Counter(index.instructions))
  assert not summary["constant_returns"]
  text = "\n".join(lines)
  assert "WARNING" not in text
  assert f"Episodes: 16   Steps: {summary['steps']}" in text
  image_line = next(line for line in lines if "steps/observation/image " in line)
  assert "(40, 40, 3)" in image_line and "uint8" in image_line and "jpeg" in image_line
  assert any("steps/action" in line and "(7,)" in line and "float32" in line for line in lines)
  for instruction, count in summary["instructions"]:
    assert any(line.split() == [str(count), *instruction.split()] for line in lines)


def test_constant_returns_warning(demo_dataset):
  lines = []
  summary = inspect_lib.inspect_dataset(demo_dataset, log=lines.append)
  assert summary["constant_returns"] and summary["return"]["distinct"] == 1
  warning = [line for line in lines if line.startswith("WARNING")]
  assert len(warning) == 1
  for text in ("config.returns.kind=time_penalty", "config.returns.negatives_ratio>0",
               "config.data.mixture"):
    assert text in warning[0]


@pytest.mark.parametrize("returns,constant", [
    ([1.0, 1.0, 1.0], True), ([1.0], True), ([1.0, 1.0 + 1e-9], True),
    ([1000.0, 1000.0001], True), ([0.0, 1.0, 1.0], False), ([-3.0, -2.5], False),
])
def test_returns_are_constant(returns, constant):
  assert returns_lib.returns_are_constant(returns) == constant


def test_bad_input_is_refused(demo_dataset, tmp_path):
  parent = os.path.dirname(demo_dataset)
  cases = [
      ((parent,), {}, [parent, "dataset_info.json"]),
      ((demo_dataset,), {"plot": str(tmp_path / "no_dir" / "h.png")},
       [str(tmp_path / "no_dir"), "does not exist"]),
      ((demo_dataset,), {"plot": str(tmp_path)}, [str(tmp_path), "unsupported image type"]),
      ((demo_dataset,), {"reward_key": "nope"}, ["steps/nope", "observation/state"]),
  ]
  for args, kwargs, expected in cases:
    with pytest.raises(UserError) as raised:
      inspect_lib.inspect_dataset(*args, **kwargs, log=lambda *_: None)
    for text in expected:
      assert text in str(raised.value), (text, str(raised.value))
  assert not os.path.exists(tmp_path / "no_dir")


@pytest.mark.slow
def test_cli(demo_dataset, tmp_path, repo_root):
  plot = str(tmp_path / "hist.png")
  cases = {
      "ok": [demo_dataset, "--plot", plot],  # the dataset as a positional argument
      "missing": ["--dataset_dir", str(tmp_path / "nope"), "--plot", plot + ".2.png"],
  }
  env = dict(os.environ, PYTHONPATH=repo_root)

  def run(argv):
    return subprocess.run([sys.executable, "-m", "rrd_jax.cli.inspect_data", *argv], cwd=repo_root,
                          env=env, capture_output=True, text=True, timeout=120, check=False)

  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    results = dict(zip(cases, pool.map(run, cases.values())))
  ok = results["ok"]
  assert ok.returncode == 0, ok.stderr
  assert "Episodes: 6" in ok.stdout and "WARNING" in ok.stdout
  with open(plot, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  result = results["missing"]
  detail = f"exit={result.returncode}\n{result.stderr}"
  assert result.returncode == 2, detail
  assert "Traceback" not in result.stderr, detail
  lines = message_lines(result.stderr)
  assert len(lines) == 1 and lines[0].startswith("error:"), detail
  assert str(tmp_path / "nope") in lines[0] and "does not exist" in lines[0], detail
  assert not os.path.exists(plot + ".2.png")
