"""rrd_jax.cli.pytorch_flags for the full agent: the reference's flags -> configs/mujoco_rrd_sac.py."""

import os
import shlex
import subprocess
import sys

import pytest

from rrd_jax.cli import pytorch_flags
from rrd_jax.config import schema
from rrd_jax.util.errors import UserError

REFERENCE_ARGS = ["--env", "Hopper-v5", "--alg", "rrd", "--basis_alg", "sac", "--tag", "hop",
                  "--epochs", "3", "--cycles", "100", "--iterations", "100", "--timesteps", "100"]


def translate(argv):
  return pytorch_flags.translate_online(pytorch_flags.make_parser().parse_args(argv))


def config_of(argv):
  _, spec, overrides = translate(argv)
  return pytorch_flags.load_online_config(spec, overrides)


def test_reference_schedule_maps_to_env_steps(repo_root, monkeypatch):
  monkeypatch.chdir(repo_root)
  workdir, spec, overrides = translate(REFERENCE_ARGS)
  config = pytorch_flags.load_online_config(spec, overrides)
  assert workdir == os.path.join("log", "hop") and spec == "configs/mujoco_rrd_sac.py:hopper"
  assert config.env.name == "Hopper-v5" and config.reward.kind == "rrd"
  assert config.train.total_env_steps == 3 * 100 * 100 * 100  # the reference's 3M
  assert config.train.env_steps_per_call == 100 and config.train.updates_per_call == 100
  assert config.eval.every_steps == 100 * 100 and config.eval.episodes == 10
  assert config.rrd.sample_size == 64 and config.rrd.episodes_per_batch == 4  # 256 // 64
  assert config.rrd.loss_form == "mean" and config.sac.batch_size == 256
  assert config.replay.capacity == 1_000_000 and config.train.warmup_steps == 10_000
  schema.validate_agent(config)


@pytest.mark.parametrize("extra,kind", [
    ([], "rrd"), (["--rrd_bias_correction", "True"], "rrd_lrd"), (["--alg", "ircr"], "ircr"),
    (["--alg", "sac"], "episodic"), (["--alg", "sac", "--env_type", "normal"], "dense"),
    (["--env_type", "ep_rews", "--alg", "ircr"], "ircr"),
])
def test_alg_maps_to_reward_kind(repo_root, monkeypatch, extra, kind):
  monkeypatch.chdir(repo_root)
  assert config_of(REFERENCE_ARGS + extra).reward.kind == kind


def test_reference_flags_and_checkpoints(repo_root, monkeypatch):
  monkeypatch.chdir(repo_root)
  config = config_of(REFERENCE_ARGS + [
      "--env", "Walker2d-v5", "--batch_size", "512", "--buffer_size", "300000", "--warmup", "5000",
      "--polyak", "0.999", "--alpha_init", "0.1", "--alpha_lr", "0", "--r_lr", "1e-3",
      "--test_rollouts", "5", "--train_batches", "50", "--save_freq", "1", "--save_final", "True",
      "--rrd_batch_size", "128", "--rrd_sample_size", "32", "--seed", "4"])
  assert config.env.name == "Walker2d-v5"
  assert (config.sac.batch_size, config.replay.capacity, config.train.warmup_steps) == (
      512, 300_000, 5000)
  assert (config.sac.polyak, config.sac.init_alpha, config.sac.alpha_lr) == (0.999, 0.1, 0.0)
  assert config.optim.learning_rate == 1e-3 and config.eval.episodes == 5
  assert config.train.updates_per_call == 50 and config.rrd.episodes_per_batch == 4
  assert config.checkpoint.every_steps == 100 * 100 * 100  # --save_freq 1 epoch
  assert config.checkpoint.dir == os.path.abspath(os.path.join("log/checkpoints", "hop"))
  assert config.checkpoint.save_final is True and config.seed == 4


@pytest.mark.parametrize("extra,mentions", [
    (["--rrd_reward_only", "True"], "--rrd_reward_only True"),
    (["--alg", "td3"], "--alg td3"),
    (["--basis_alg", "td3"], "--basis_alg td3"),
    (["--env_type", "normal"], "--alg rrd"),
    (["--timesteps", "0"], "--timesteps"),
])
def test_bad_flags_are_user_errors(extra, mentions):
  with pytest.raises(UserError) as excinfo:
    translate(REFERENCE_ARGS + extra)
  assert mentions in str(excinfo.value)


def test_libero_defaults_unchanged():
  """Without a MuJoCo --env the LIBERO reward-only mapping applies, reward-only by default."""
  args = pytorch_flags.make_parser().parse_args(["--libero_dataset_path", "/d/1.0.0"])
  assert not pytorch_flags.is_online(args)
  _, overrides = pytorch_flags.translate(args)
  assert overrides["rrd.loss_form"] == "return"


@pytest.mark.slow
def test_cli_runs_the_full_agent(repo_root, tmp_path):
  """python -m rrd_jax.cli.pytorch_flags with the reference's flags, tiny: prints the equivalent command,
  trains Pendulum-v1 (SAC on the dense reward) and writes log/<tag>/."""
  argv = ["--env", "Pendulum-v1", "--alg", "sac", "--env_type", "normal", "--tag", "p",
          "--epochs", "1", "--cycles", "2", "--iterations", "2", "--timesteps", "100",
          "--train_batches", "10", "--warmup", "200", "--test_rollouts", "1", "--batch_size", "32",
          "--buffer_size", "2000", "--checkpoint_dir", "ckpts"]
  env = dict(os.environ, PYTHONPATH=repo_root)
  result = subprocess.run([sys.executable, "-m", "rrd_jax.cli.pytorch_flags", *argv], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  command = result.stdout.split("Equivalent command:\n")[1].splitlines()[0].strip()
  parts = shlex.split(command)
  assert parts[:5] == ["python", "-m", "rrd_jax.cli.train", "--config",
                       "configs/mujoco_rrd_sac.py:pendulum"]
  assert "--config.reward.kind=dense" in parts and "--config.train.total_env_steps=400" in parts
  assert os.path.exists(os.path.join(tmp_path, "log", "p", "metrics.jsonl"))
  assert os.path.isdir(os.path.join(tmp_path, "ckpts", "p", "steps"))


@pytest.mark.parametrize("argv,message", [
    (["--tag", "../../x"], "must be a name, not a path"),
    (["--rrd_sample_size", "0"], "--rrd_sample_size must be >= 1, got 0"),
    (["--env", "Hopper-v5", "--rrd_sample_size", "0"], "--rrd_sample_size must be >= 1, got 0"),
])
def test_bad_legacy_flags_are_one_sentence(argv, message):
  args = pytorch_flags.make_parser().parse_args(argv)
  with pytest.raises(UserError, match=message):
    (pytorch_flags.translate_online if pytorch_flags.is_online(args) else pytorch_flags.translate)(args)
