"""The online agent end to end: SAC learns Pendulum (dense reward); RRD-SAC on Hopper through the
real CLI writes its metrics, curve and checkpoint, and a rerun resumes with the buffer restored;
bad input is one sentence and exit 2."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from rrd_jax.config import schema
from rrd_jax.rl import agent_loop
from tests.rl_helpers import online_config

HOPPER_ARGS = [
    "--config", "configs/mujoco_rrd_sac.py:hopper",
    "--config.train.total_env_steps=600", "--config.train.warmup_steps=300",
    "--config.train.env_steps_per_call=100", "--config.train.updates_per_call=20",
    "--config.train.log_every_steps=300", "--config.eval.every_steps=300", "--config.eval.episodes=1",
    "--config.env.max_episode_steps=100", "--config.replay.capacity=5000",
    "--config.checkpoint.every_steps=300", "--config.sac.hidden_sizes=(32,32)",
    "--config.rrd.hidden_sizes=(32,32)", "--config.sac.batch_size=32", "--config.rrd.sample_size=8",
]


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def run_cli(repo_root, args, timeout=300):
  env = dict(os.environ, PYTHONPATH=repo_root)
  return subprocess.run([sys.executable, "-m", "rrd_jax.cli.train", *args], cwd=repo_root, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_sac_learns_pendulum(repo_root, tmp_path):
  config = online_config(repo_root, "pendulum")  # dense reward, 6000 env steps
  results = agent_loop.train_and_evaluate(config, str(tmp_path), log=lambda *_: None)
  returns = [r["eval/return"] for r in read_metrics(str(tmp_path)) if "eval/return" in r]
  assert returns[0] < -900  # a random-ish policy after the warm-up
  assert max(returns[-2:]) > -600 and results["eval/return"] > -800, returns


@pytest.mark.slow
def test_acting_from_a_host_copy_is_the_same_policy(repo_root, tmp_path, monkeypatch):
  """train.act_on_host (taken on accelerators) acts from a host copy of the actor refreshed after
  every training call: the run is the same as acting from the learner's own params. Forced on
  this CPU machine by pretending the backend is an accelerator."""
  overrides = {"train.total_env_steps": 400, "train.warmup_steps": 200, "eval.every_steps": 200,
               "eval.episodes": 1, "train.log_every_steps": 200, "sac.hidden_sizes": (16,),
               "sac.batch_size": 32}
  plain = online_config(repo_root, "pendulum", **overrides, **{"train.act_on_host": False})
  agent_loop.train_and_evaluate(plain, str(tmp_path / "plain"), log=lambda *_: None)
  hosted = online_config(repo_root, "pendulum", **overrides)
  copies = []
  real_device_put = agent_loop.jax.device_put
  monkeypatch.setattr(agent_loop.jax, "default_backend", lambda: "gpu")
  monkeypatch.setattr(agent_loop.jax, "device_put", lambda x, device=None, **kw: (
      copies.append(device), real_device_put(x, device, **kw))[1])
  agent_loop.train_and_evaluate(hosted, str(tmp_path / "hosted"), log=lambda *_: None)
  to_devices = [d for d in copies if isinstance(d, jax.Device)]  # not shardings put elsewhere
  assert all(d.platform == "cpu" for d in to_devices)
  assert len(to_devices) >= 2 + 2  # keys and the initial actor, then one per training call
  rows = [read_metrics(str(tmp_path / name)) for name in ("plain", "hosted")]
  evals = [[r["eval/return"] for r in run if "eval/return" in r] for run in rows]
  assert len(evals[0]) == 2 and evals[0] == evals[1]


@pytest.fixture(scope="module")
def hopper_run(repo_root, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("hopper"))
  first = run_cli(repo_root, HOPPER_ARGS + ["--workdir", workdir])
  return workdir, first


@pytest.mark.slow
def test_hopper_cli_writes_metrics_and_checkpoint(hopper_run):
  workdir, result = hopper_run
  assert result.returncode == 0, result.stdout + result.stderr
  rows = read_metrics(workdir)
  train_rows = [r for r in rows if "train/critic_loss" in r]
  assert train_rows and all(r["env_steps"] == r["step"] for r in rows)
  for key in ("train/rrd_loss", "train/critic_loss", "train/actor_loss", "train/alpha_loss",
              "train/alpha", "train/updates_per_s", "train/env_steps_per_s"):
    assert key in train_rows[-1], key
  evals = [r for r in rows if "eval/return" in r]
  assert [r["env_steps"] for r in evals] == [300, 600]
  assert os.path.exists(os.path.join(workdir, "learning_curve.png"))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "steps"))) == ["600"]
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    assert json.load(f)["config"]["reward"]["kind"] == "rrd"


@pytest.mark.slow
def test_hopper_rerun_resumes_with_the_buffer(hopper_run, repo_root):
  workdir, first = hopper_run
  assert first.returncode == 0
  args = [a for a in HOPPER_ARGS if "total_env_steps" not in a]
  second = run_cli(repo_root, args + ["--config.train.total_env_steps=900", "--workdir", workdir])
  assert second.returncode == 0, second.stdout + second.stderr
  assert "Resuming the run" in second.stdout and "from env step 600" in second.stdout
  transitions = int(second.stdout.split("from env step 600 (")[1].split(" transitions")[0])
  assert 0 < transitions <= 600  # the restored buffer: whole episodes of the first 600 steps
  rows = read_metrics(workdir)
  evals = [r["env_steps"] for r in rows if "eval/return" in r]
  assert evals == [300, 600, 900]  # env steps continue from the checkpoint
  steps = [r["step"] for r in rows]
  assert steps == sorted(steps)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "steps"))) == ["900"]


@pytest.mark.slow
@pytest.mark.parametrize("override,mentions", [
    ("--config.env.name=Hoper-v5", "env.name"),
    ("--config.reward.kind=shaped", "reward.kind"),
    ("--config.population.reward_kinds=rrd,shaped", "'shaped' in 'rrd,shaped'"),
    ("--config.population.seeds=0", "population.seeds"),
    ("--config.population.devices=2", "population.devices"),  # 1 device here
])
def test_bad_input_is_one_sentence_and_exit_2(repo_root, tmp_path, override, mentions):
  result = run_cli(repo_root, ["--config", "configs/mujoco_rrd_sac.py:hopper", override,
                               "--workdir", str(tmp_path / "bad")], timeout=120)
  assert result.returncode == 2, result.stdout + result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and mentions in lines[0] and "Traceback" not in result.stderr


def test_validate_rejects_bad_values(repo_root):
  from rrd_jax.util.errors import UserError  # pylint: disable=import-outside-toplevel
  for overrides in ({"sac.gamma": -0.1}, {"sac.polyak": 1.5}, {"sac.batch_size": 0}, {"sac.log_std_min": 3.0},
                    {"reward.kind": "rrd_lrd", "rrd.sample_size": 1},
                    {"replay.capacity": 10}, {"train.env_steps_per_call": 0}):
    with pytest.raises(UserError):
      schema.validate_agent(online_config(repo_root, "hopper", **overrides))


def _last_env_step(workdir):
  """The last logged env step of a run still being written (0 before its first row)."""
  try:
    return max((r.get("env_steps", 0) for r in read_metrics(workdir)), default=0)
  except (FileNotFoundError, json.JSONDecodeError):
    return 0


@pytest.mark.slow
def test_ctrl_c_saves_where_it_stands_and_a_rerun_resumes_there(repo_root, tmp_path):
  """SIGINT to the whole process group of an RRD-SAC run (what Ctrl-C sends, subprocess env
  workers included): the run finishes the call in flight, saves agent + buffer, prints one line
  and exits 130; the workers ignore the signal, so nothing breaks under the saving process. A
  rerun resumes there."""
  workdir = str(tmp_path / "w")
  args = ["--config", "configs/mujoco_rrd_sac.py:pendulum", "--config.reward.kind=rrd",
          "--config.sac.hidden_sizes=(16,)", "--config.rrd.hidden_sizes=(16,)",
          "--config.train.warmup_steps=200", "--config.train.log_every_steps=100",
          "--config.eval.every_steps=100000", "--config.eval.episodes=1",
          "--config.checkpoint.every_steps=100000", "--config.env.subprocesses=True",
          "--config.env.num_envs=2"]
  env = dict(os.environ, PYTHONPATH=repo_root)
  process = subprocess.Popen(
      [sys.executable, "-m", "rrd_jax.cli.train", *args, "--config.train.total_env_steps=100000",
       "--workdir", workdir], cwd=repo_root, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, start_new_session=True)
  deadline = time.time() + 240
  while _last_env_step(workdir) < 300 and process.poll() is None and time.time() < deadline:
    time.sleep(0.2)  # until past the warm-up, training
  assert process.poll() is None, process.communicate()  # still running when interrupted
  os.killpg(process.pid, signal.SIGINT)
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 130, stdout + stderr
  assert "Traceback" not in stderr, stderr[-3000:]
  lines = [line for line in stderr.splitlines() if line.startswith("stopped by SIGINT")]
  assert len(lines) == 1 and "rerun the same command" in lines[0], stderr[-3000:]
  stopped_at = int(lines[0].split("env step ")[1].split()[0])
  assert stopped_at >= 300 and stopped_at % 100 == 0  # a call boundary
  assert os.listdir(os.path.join(workdir, "checkpoints", "steps")) == [str(stopped_at)]
  second = run_cli(repo_root, args + [f"--config.train.total_env_steps={stopped_at + 100}",
                                      "--workdir", workdir])
  assert second.returncode == 0, second.stdout + second.stderr
  assert f"from env step {stopped_at} (" in second.stdout
