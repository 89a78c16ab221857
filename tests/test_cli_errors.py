"""The CLIs' bad-input contract, checked on the real commands run as subprocesses.

Product rule: bad input gets ONE clear sentence on stderr naming the problem and the offending
path/key/value, exit code 2, no traceback, and nothing already on disk is overwritten.

Every subprocess pays ~5 s of imports, so the cases are launched together once per module (a few
at a time) after one tiny in-process training + prediction has made a finished run to collide with.
"""

import concurrent.futures
import os
import subprocess
import sys

import pytest

from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)

# Flags equivalent to conftest.tiny_config, for runs that get past validation.
TINY_FLAGS = [
    "--config.data.image_size=40", "--config.rrd.sample_size=4",
    "--config.rrd.episodes_per_batch=4", "--config.model.hidden_sizes=(32,32)",
    "--config.train.num_steps=2", "--config.eval.every_steps=2", "--config.train.log_every_steps=1",
    "--config.eval.batches=1", "--config.eval.episodes=2",
    "--config.train.predict_batch_size=16", "--config.data.eval_fraction=0.25",
]


def message_lines(stderr):
  """Non-empty stderr lines. Nothing may precede our message: TensorFlow's start-up lines are
  dropped (rrd_jax/util/quiet_start.py), so they count here if they come back."""
  return [line for line in stderr.splitlines() if line.strip()]


def assert_one_sentence_error(result, expected, detail):
  """Exit 2, no traceback, one `error:` line on stderr containing every expected substring."""
  assert "Traceback" not in result.stderr, detail
  assert result.returncode == 2, detail
  lines = message_lines(result.stderr)
  assert len(lines) == 1, detail
  assert lines[0].startswith("error:"), detail
  for text in expected:
    assert text in lines[0], f"{text!r} not in the message\n{detail}"


def snapshot(directory):
  """{relative path: bytes} of every file under `directory`."""
  files = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, directory)] = f.read()
  return files


class Env:
  """Paths shared by the cases (filled in by the `cli` fixture)."""


def _cases(e):
  """name -> (module, argv, substrings the error line must contain)."""
  train = lambda workdir, *flags: ["--workdir", workdir, "--config", "configs/libero_rrd.py",
                                   *flags]
  ds = lambda d: f"--config.data.dataset_dir={d}"
  fresh = lambda name: os.path.join(e.tmp, "workdirs", name)
  return {
      # a. dataset directory does not exist
      "missing_dataset": ("rrd_jax.cli.train", train(fresh("missing_dataset"), ds(e.missing_dir), *TINY_FLAGS),
                          [e.missing_dir, "does not exist"]),
      # b. a directory that is not a dataset version directory
      "empty_dataset_dir": ("rrd_jax.cli.train", train(fresh("empty_dataset_dir"), ds(e.empty_dir), *TINY_FLAGS),
                            [e.empty_dir, "dataset_info.json"]),
      "dataset_parent_dir": ("rrd_jax.cli.train", train(fresh("dataset_parent_dir"), ds(e.parent_dir), *TINY_FLAGS),
                             [e.parent_dir, "dataset_info.json", e.version_name]),
      # c. a configured feature key the dataset lacks
      "missing_feature_key": ("rrd_jax.cli.train",
                              train(fresh("missing_feature_key"), ds(e.dataset_dir), *TINY_FLAGS,
                                    "--config.data.proprio_key=observation/nope"),
                              ["data.proprio_key", "observation/nope",
                               "numeric vector step features are: action, "
                               "observation/joint_state, observation/state"]),
      # d. invalid config values
      "bias_correction_sample_size_1": (
          "rrd_jax.cli.train", train(fresh("bias_correction_sample_size_1"), ds(e.dataset_dir), *TINY_FLAGS,
                                 "--config.rrd.sample_size=1", "--config.rrd.bias_correction=True"),
          ["rrd.bias_correction", "rrd.sample_size", "got 1"]),
      "episodes_per_batch_0": ("rrd_jax.cli.train",
                               train(fresh("episodes_per_batch_0"), ds(e.dataset_dir), *TINY_FLAGS,
                                     "--config.rrd.episodes_per_batch=0"),
                               ["rrd.episodes_per_batch", "got 0"]),
      "image_size_0": ("rrd_jax.cli.train", train(fresh("image_size_0"), ds(e.dataset_dir), *TINY_FLAGS,
                                              "--config.data.image_size=0"),
                       ["data.image_size", "got 0"]),
      "loss_form_bogus": ("rrd_jax.cli.train", train(fresh("loss_form_bogus"), ds(e.dataset_dir), *TINY_FLAGS,
                                                 "--config.rrd.loss_form=bogus"),
                          ["rrd.loss_form", "bogus"]),
      "model_kind_bogus": ("rrd_jax.cli.train", train(fresh("model_kind_bogus"), ds(e.dataset_dir), *TINY_FLAGS,
                                                  "--config.model.kind=bogus"),
                           ["model.kind", "bogus"]),
      "device_cache_too_big": ("rrd_jax.cli.train",
                               train(fresh("device_cache_too_big"), ds(e.dataset_dir), *TINY_FLAGS,
                                     "--config.data.cache=device",
                                     "--config.data.cache_memory_gib=1e-5"),
                               ["data.cache=device needs", "per device", "0.01 MiB available",
                                "data.image_size", "more devices", "data.cache=none"]),
      # e. unknown config key
      "unknown_config_key": ("rrd_jax.cli.train", train(fresh("unknown_config_key"), ds(e.dataset_dir), *TINY_FLAGS,
                                                    "--config.rrd.nope=3"),
                             ["nope"]),
      # --config: a missing config file, an unknown variant of the config file
      "config_file_missing": ("rrd_jax.cli.train",
                              ["--workdir", fresh("config_file_missing"), "--config", "configs/nope.py"],
                              ["configs/nope.py"]),
      "config_variant_unknown": ("rrd_jax.cli.train",
                                 ["--workdir", fresh("config_variant_unknown"), "--config",
                                  "configs/libero_rrd.py:bogus"],
                                 ["bogus"]),
      # f. the workdir already holds a finished run
      # (the same config would resume it; a different one is refused)
      "existing_run": ("rrd_jax.cli.train", train(e.run_dir, ds(e.dataset_dir), *TINY_FLAGS,
                                              "--config.seed=5"),
                       [e.run_dir, "different config", "seed", "overwrite"]),
      # g. no --workdir
      "missing_workdir": ("rrd_jax.cli.train",
                          ["--config", "configs/libero_rrd.py", ds(e.dataset_dir), *TINY_FLAGS],
                          ["--workdir"]),
      # predict: a workdir that is not a training run
      "predict_not_a_run": ("rrd_jax.cli.predict",
                            ["--workdir", e.empty_workdir, "--out", e.never_written_out],
                            [os.path.join(e.empty_workdir, "config.json")]),
      # predict: --out already holds predictions
      "predict_existing_out": ("rrd_jax.cli.predict", ["--workdir", e.run_dir, "--out", e.preds_dir],
                               [e.preds_dir]),
  }


@pytest.fixture(scope="module")
def cli(tiny_dataset_dir, repo_root, tmp_path_factory):
  """Makes a finished tiny run (+ predictions), then runs every case; (env, {name: result})."""
  from rrd_jax.cli import train
  from rrd_jax.infer import predict  # pylint: disable=import-outside-toplevel

  e = Env()
  e.tmp = str(tmp_path_factory.mktemp("cli_errors"))
  e.dataset_dir = os.path.abspath(tiny_dataset_dir)
  e.parent_dir = os.path.dirname(e.dataset_dir)
  e.version_name = os.path.basename(e.dataset_dir)
  e.missing_dir = os.path.join(e.tmp, "no_such_dataset", "1.0.0")
  e.empty_dir = os.path.join(e.tmp, "empty_dataset")
  e.empty_workdir = os.path.join(e.tmp, "not_a_run")
  e.never_written_out = os.path.join(e.tmp, "never_written_out")
  os.makedirs(e.empty_dir)
  os.makedirs(e.empty_workdir)
  e.run_dir = os.path.join(e.tmp, "run")
  e.preds_dir = os.path.join(e.tmp, "preds")
  train.train_and_evaluate(
      tiny_config(e.dataset_dir, **{"train.num_steps": 2, "eval.every_steps": 2,
                                    "eval.episodes": 2}), e.run_dir, log=lambda *_: None)
  predict.predict_dataset(e.run_dir, e.preds_dir, log=lambda *_: None)
  e.before = {"run": snapshot(e.run_dir), "preds": snapshot(e.preds_dir)}

  env = dict(os.environ, PYTHONPATH=repo_root)
  cases = _cases(e)
  assert list(cases) == CASE_NAMES

  def run(name):
    module, argv, _ = cases[name]
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)

  with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    results = dict(zip(cases, pool.map(run, cases)))
  return e, cases, results


CASE_NAMES = [
    "missing_dataset", "empty_dataset_dir", "dataset_parent_dir", "missing_feature_key",
    "bias_correction_sample_size_1", "episodes_per_batch_0", "image_size_0", "loss_form_bogus",
    "model_kind_bogus", "device_cache_too_big", "unknown_config_key", "config_file_missing",
    "config_variant_unknown",
    "existing_run", "missing_workdir",
    "predict_not_a_run", "predict_existing_out",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_sentence_exit_2(cli, name):
  e, cases, results = cli
  _, argv, expected = cases[name]
  result = results[name]
  detail = f"argv={argv}\nexit={result.returncode}\nstderr:\n{result.stderr}"
  assert_one_sentence_error(result, expected, detail)


def test_failed_training_writes_no_run(cli):
  """A refused training writes nothing into its fresh --workdir (no config.json), so the same
  --workdir can be used again once the input is fixed."""
  e, _, _ = cli
  workdirs = os.path.join(e.tmp, "workdirs")
  written = {name: sorted(snapshot(os.path.join(workdirs, name)))
             for name in (os.listdir(workdirs) if os.path.isdir(workdirs) else [])}
  assert not {name: files for name, files in written.items() if files}, written


def test_existing_run_is_untouched(cli):
  e, _, results = cli
  assert results["existing_run"].returncode != 0
  assert snapshot(e.run_dir) == e.before["run"]


def test_existing_predictions_are_untouched(cli):
  e, _, results = cli
  assert results["predict_existing_out"].returncode != 0
  assert snapshot(e.preds_dir) == e.before["preds"]
  assert snapshot(e.run_dir) == e.before["run"]
  assert not os.path.exists(e.never_written_out)


@pytest.mark.parametrize("raised,code,line", [
    ("user", 2, "error: bad value"), ("interrupted", 143, "stopped by SIGTERM: saved"),
    ("ctrl_c", 130, "interrupted by Ctrl-C.")])
def test_cli_main_ends_each_way_with_one_line_and_its_exit_code(raised, code, line, capsys):
  from rrd_jax.util import errors  # pylint: disable=import-outside-toplevel

  @errors.cli_main
  def main():
    if raised == "user":
      raise errors.UserError("bad value")
    if raised == "interrupted":
      raise errors.Interrupted("stopped by SIGTERM: saved", 143)
    raise KeyboardInterrupt

  with pytest.raises(SystemExit) as exited:
    main()
  assert exited.value.code == code
  assert capsys.readouterr().err.splitlines() == [line]
