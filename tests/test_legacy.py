"""rrd_jax.cli.pytorch_flags: the PyTorch tool's flags, translated to configs/libero_rrd.py overrides and run."""

import ast
import csv
import json
import os
import shlex
import subprocess
import sys

import pytest

from rrd_jax.cli import pytorch_flags
from rrd_jax.config import loading, schema
from rrd_jax.util.errors import UserError

# The seed command of docs/ALGORITHM.md (scripts/train.py flags), dataset path aside.
SEED_ARGS = [
    "--env", "libero-10", "--env_type", "normal", "--alg", "rrd", "--basis_alg", "sac",
    "--rrd_reward_only", "True", "--tag", "pretrain_RRD_Libero10",
    "--libero_dataset_path", "/data/with space/libero_10_no_noops/1.0.0",
    "--libero_image_size", "256", "--cuda",
    "--epochs", "10", "--cycles", "50", "--iterations", "100", "--train_batches", "50",
    "--batch_size", "32", "--rrd_batch_size", "32", "--rrd_sample_size", "32",
    "--save_freq", "2", "--checkpoint_dir", "log/checkpoints", "--save_final", "True",
]


def translate(argv):
  return pytorch_flags.translate(pytorch_flags.make_parser().parse_args(argv))


def with_flag(argv, flag, value):
  """argv with `flag`'s value replaced (or the flag appended)."""
  argv = list(argv)
  if flag in argv:
    argv[argv.index(flag) + 1] = value
  else:
    argv += [flag, value]
  return argv


def config_of(argv):
  _, overrides = translate(argv)
  return loading.load_config(overrides=overrides)


# --- flag mapping ------------------------------------------------------------------------------


def test_seed_command_mapping():
  workdir, overrides = translate(SEED_ARGS)
  config = loading.load_config(overrides=overrides)
  assert workdir == os.path.join("log", "pretrain_RRD_Libero10")
  assert config.train.num_steps == 500  # epochs x cycles updates in reward-only mode
  assert config.rrd.episodes_per_batch == 1  # rrd_batch_size // rrd_sample_size
  assert config.rrd.sample_size == 32
  assert config.data.image_size == 256
  assert config.data.dataset_dir == "/data/with space/libero_10_no_noops/1.0.0"
  assert config.rrd.loss_form == "return"
  assert config.checkpoint.every_steps == 2 * 50  # --save_freq is in epochs
  assert config.checkpoint.dir == os.path.abspath(os.path.join("log/checkpoints",
                                                             "pretrain_RRD_Libero10"))
  assert config.checkpoint.save_final is True
  schema.validate(config)


def test_seed_command_matches_seed_variant():
  """The config file's `seed` variant is documented as the seed command's shapes."""
  legacy_config = config_of(SEED_ARGS)
  seed = loading.load_config(variant="seed")
  for key in ("data.image_size", "rrd.sample_size", "rrd.episodes_per_batch", "rrd.loss_form",
              "train.num_steps"):
    section, field = key.split(".")
    assert legacy_config[section][field] == seed[section][field], key


@pytest.mark.parametrize("flag,value", [("--iterations", "7"), ("--train_batches", "3"),
                                        ("--batch_size", "1024")])
def test_policy_flags_do_not_change_updates(flag, value):
  assert config_of(with_flag(SEED_ARGS, flag, value)).to_dict() == config_of(SEED_ARGS).to_dict()


def test_updates_are_epochs_times_cycles():
  argv = with_flag(with_flag(SEED_ARGS, "--epochs", "3"), "--cycles", "7")
  config = config_of(argv)
  assert config.train.num_steps == 21
  assert config.checkpoint.every_steps == 2 * 7


@pytest.mark.parametrize("batch,sample,episodes", [(64, 16, 4), (32, 32, 1), (70, 16, 4)])
def test_episodes_per_batch(batch, sample, episodes):
  argv = with_flag(with_flag(SEED_ARGS, "--rrd_batch_size", str(batch)),
                   "--rrd_sample_size", str(sample))
  config = config_of(argv)
  assert config.rrd.episodes_per_batch == episodes
  assert config.rrd.sample_size == sample


def test_defaults_without_tag():
  workdir, overrides = translate(["--libero_dataset_path", "/d/1.0.0"])
  assert workdir == os.path.join("log", "rrd-libero-10")
  assert overrides["checkpoint.dir"] == os.path.abspath(os.path.join("log/checkpoints",
                                                                    "rrd-libero-10"))
  assert overrides["checkpoint.every_steps"] == 0  # --save_freq 0: no periodic checkpoints
  schema.validate(loading.load_config(overrides=overrides))


def _typed(text, default):
  """A --config.KEY=TEXT value as the type of the config field's default."""
  if isinstance(default, bool):
    assert text in ("True", "False"), text
    return text == "True"
  if isinstance(default, (int, float)):
    return type(default)(text)
  if isinstance(default, (tuple, list)):
    return type(default)(ast.literal_eval(text))
  return text


@pytest.mark.parametrize("argv", [
    SEED_ARGS,
    with_flag(with_flag(SEED_ARGS, "--tag", "it's a 'tag'"), "--rrd_bias_correction", "True"),
    ["--libero_dataset_path", ""],
])
def test_new_style_command_round_trips(argv):
  workdir, overrides = translate(argv)
  command = pytorch_flags.new_style_command(workdir, overrides)
  parts = shlex.split(command)
  assert parts[:3] == ["python", "-m", "rrd_jax.cli.train"]
  assert parts[parts.index("--workdir") + 1] == workdir
  assert parts[parts.index("--config") + 1] == "configs/libero_rrd.py"
  default = loading.load_config()
  parsed = {}
  for part in parts:
    if part.startswith("--config."):
      key, _, text = part[len("--config."):].partition("=")
      section, field = key.split(".") if "." in key else (None, key)
      parsed[key] = _typed(text, default[section][field] if section else default[field])
  assert set(parsed) == set(overrides)
  assert (loading.load_config(overrides=parsed).to_dict() ==
          loading.load_config(overrides=overrides).to_dict())


def test_new_style_command_parses_with_the_train_flags(repo_root, monkeypatch):
  """The printed command's flags parse with the same config_flags definition as rrd_jax.cli.train."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel

  monkeypatch.chdir(repo_root)
  workdir, overrides = translate(SEED_ARGS)
  parts = shlex.split(pytorch_flags.new_style_command(workdir, overrides))
  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", "configs/libero_rrd.py", "",
                                                flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
  argv = ["train", *parts[3:]]
  monkeypatch.setattr(sys, "argv", argv)  # config_flags reads the overrides from sys.argv
  flag_values(argv)
  assert flag_values.workdir == workdir
  assert config_flag.value.to_dict() == loading.load_config(overrides=overrides).to_dict()


@pytest.mark.parametrize("flag,value,mentions", [
    ("--rrd_batch_size", "16", ["--rrd_batch_size 16", "--rrd_sample_size 32"]),
    ("--rrd_reward_only", "False", ["--rrd_reward_only False"]),
    ("--env", "hopper", ["--env hopper"]),
    ("--alg", "sac", ["--alg sac"]),
    ("--epochs", "0", ["--epochs", "0"]),
    ("--rrd_reward_only", "maybe", ["maybe"]),
    ("--epochs", "ten", ["ten"]),
])
def test_bad_values_are_user_errors(flag, value, mentions):
  with pytest.raises(UserError) as excinfo:
    translate(with_flag(SEED_ARGS, flag, value))
  for text in mentions:
    assert text in str(excinfo.value)


def test_bad_value_cli_prints_one_line_and_exits_2(capsys):
  """legacy.main: a UserError becomes `error: <sentence>` on stderr and exit status 2."""
  with pytest.raises(SystemExit) as excinfo:
    pytorch_flags.main(with_flag(SEED_ARGS, "--env", "hopper"))
  assert excinfo.value.code == 2
  captured = capsys.readouterr()
  lines = [line for line in captured.err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error:") and "hopper" in lines[0]
  assert "Traceback" not in captured.err


# --- end to end ---------------------------------------------------------------------------------

E2E_ARGS = ["--env", "libero-10", "--rrd_reward_only", "True", "--tag", "t1",
            "--libero_image_size", "40", "--cuda", "--epochs", "2", "--cycles", "3",
            "--rrd_batch_size", "8", "--rrd_sample_size", "4", "--save_freq", "1",
            "--checkpoint_dir", "ckpts", "--save_final", "True"]


@pytest.fixture(scope="module")
def legacy_run(tiny_dataset_dir, repo_root, tmp_path_factory):
  """The legacy CLI run as a subprocess in a fresh cwd (log/ and ckpts/ land there)."""
  cwd = str(tmp_path_factory.mktemp("legacy_cwd"))
  argv = E2E_ARGS + ["--libero_dataset_path", tiny_dataset_dir]
  env = dict(os.environ, PYTHONPATH=repo_root)
  result = subprocess.run([sys.executable, "-m", "rrd_jax.cli.pytorch_flags", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
  return cwd, argv, env, result


@pytest.mark.slow
def test_legacy_run_succeeds_and_prints_equivalent_command(legacy_run, monkeypatch):
  import jax  # pylint: disable=import-outside-toplevel

  cwd, argv, _, result = legacy_run
  assert result.returncode == 0, result.stdout + result.stderr
  assert "Traceback" not in result.stderr
  monkeypatch.chdir(cwd)  # the checkpoint directory is made absolute from the run's cwd
  workdir, overrides = translate(argv)
  assert pytorch_flags.new_style_command(workdir, overrides) in result.stdout
  assert "python -m rrd_jax.cli.train" in result.stdout
  if jax.default_backend() == "cpu":
    assert "--cuda: no accelerator found; running on CPU." in result.stdout


def test_legacy_run_config(legacy_run):
  cwd, _, _, _ = legacy_run
  with open(os.path.join(cwd, "log", "t1", "config.json"), encoding="utf-8") as f:
    record = json.load(f)
  assert record["config"]["train"]["num_steps"] == 6  # epochs x cycles
  assert record["config"]["rrd"]["episodes_per_batch"] == 2  # 8 // 4
  assert record["config"]["rrd"]["sample_size"] == 4
  assert record["config"]["rrd"]["loss_form"] == "return"
  assert os.path.realpath(record["checkpoint_dir"]) == os.path.realpath(
      os.path.join(cwd, "ckpts", "t1"))


def test_legacy_run_update_count(legacy_run):
  cwd, _, _, _ = legacy_run
  with open(os.path.join(cwd, "log", "t1", "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  train_steps = [r["step"] for r in records if "train/loss" in r]
  assert train_steps and train_steps[-1] == 6


def test_legacy_run_checkpoints(legacy_run):
  cwd, _, _, _ = legacy_run
  ckpt_dir = os.path.join(cwd, "ckpts", "t1", "steps")
  steps = sorted(int(name) for name in os.listdir(ckpt_dir) if name.isdigit())
  assert 6 in steps  # final
  assert 3 in steps  # periodic: --save_freq 1 epoch = 3 updates
  assert not os.path.exists(os.path.join(cwd, "log", "t1", "checkpoints"))


@pytest.mark.slow
def test_predict_on_legacy_run(legacy_run):
  cwd, _, env, _ = legacy_run
  result = subprocess.run(
      [sys.executable, "-m", "rrd_jax.cli.predict", "--workdir", os.path.join("log", "t1"),
       "--out", "preds"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  with open(os.path.join(cwd, "preds", "returns.csv"), encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 16
  assert [int(r["episode"]) for r in rows] == list(range(16))
