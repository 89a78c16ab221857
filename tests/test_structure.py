"""The codebase's shape: data flows one way through the modules, functions stay short, one module
owns the orbax checkpoint manager, and the package installs with its console scripts."""

import ast
import importlib.metadata
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGE = os.path.join(ROOT, "rrd_jax")
# The flow config -> data -> model -> loss -> step -> loop -> CLI: a module may import its own
# layer and the layers before it, never one after it. Names are relative to rrd_jax; "data.*"
# is every module of the subpackage not named elsewhere.
LAYERS = (
    ("config", ("errors", "schema", "inputs", "files", "config_utils", "progress", "quiet_start",
                "compile_cache")),
    ("data", ("data.*",)),
    ("model", ("models", "augment")),
    ("loss", ("losses",)),
    ("step", ("step", "parallel")),
    ("loop", ("checkpoint", "metrics", "interrupt", "lifecycle", "plots", "curves", "evaluation",
              "profiling", "steppers", "reward_setup", "reward_loop", "reward_api", "rl.*")),
    ("cli", ("train", "predict", "relabel", "inspect", "legacy", "plot_runs",
             "data.convert_libero_hdf5")),
)
CONSOLE_SCRIPTS = ("rrd-train", "rrd-predict", "rrd-relabel", "rrd-inspect", "rrd-convert-libero")


def _modules():
  """{dotted name relative to rrd_jax: path} of every module in the package."""
  found = {}
  for root, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        rel = os.path.relpath(os.path.join(root, name), PACKAGE)[:-3].replace(os.sep, ".")
        found[rel.removesuffix(".__init__").removesuffix("__init__") or "__init__"] = os.path.join(
            root, name)
  return found


def _layer(module):
  exact = {m: i for i, (_, members) in enumerate(LAYERS) for m in members if "*" not in m}
  if module in exact:
    return exact[module]
  for i, (_, members) in enumerate(LAYERS):
    for member in members:
      if member.endswith(".*") and module.startswith(member[:-1]):
        return i
  return None


def _imports(path, modules):
  """The rrd_jax modules a file imports (anywhere in it, function-level imports included)."""
  out = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
    else:
      continue
    for name in names:
      if name.startswith("rrd_jax."):
        rel = name[len("rrd_jax."):]
        if rel in modules:
          out.add(rel)
  return out


def test_every_module_has_a_layer():
  unplaced = [m for m in _modules() if not m.endswith("__init__") and m != "data"
              and m != "rl" and _layer(m) is None]
  assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_no_module_imports_a_later_layer():
  modules = _modules()
  back_edges = []
  for module, path in modules.items():
    here = _layer(module)
    if here is None:
      continue
    for imported in _imports(path, modules):
      there = _layer(imported)
      if there is not None and there > here:
        back_edges.append(f"{module} ({LAYERS[here][0]}) imports {imported} "
                          f"({LAYERS[there][0]})")
  assert not back_edges, "\n".join(back_edges)


def test_functions_are_at_most_80_lines():
  long = []
  for module, path in _modules().items():
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > 80:
          long.append(f"{module}.{node.name}: {lines} lines")
  assert not long, long


def test_one_module_defines_the_checkpoint_manager():
  owners = [m for m, path in _modules().items()
            if "CheckpointManager(" in open(path, encoding="utf-8").read()]
  assert owners == ["checkpoint"]


def test_tests_import_the_package_without_path_edits():
  needle = "sys." + "path"
  edits = [name for name in os.listdir(os.path.join(ROOT, "tests")) if name.endswith(".py")
           and needle in open(os.path.join(ROOT, "tests", name), encoding="utf-8").read()]
  assert not edits


def test_console_scripts_are_installed():
  scripts = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")
             if ep.name.startswith("rrd-")}
  assert set(CONSOLE_SCRIPTS) <= set(scripts), sorted(scripts)
  for name in CONSOLE_SCRIPTS:
    assert callable(scripts[name].load()), name


@pytest.mark.slow
@pytest.mark.parametrize("script,flag", [("rrd-train", "--workdir"), ("rrd-predict", "--out"),
                                         ("rrd-inspect", "--plot")])
def test_console_script_help_lists_its_flags(script, flag, tmp_path):
  """Run from outside the checkout, as an installed tool."""
  path = os.path.join(os.path.dirname(sys.executable), script)
  result = subprocess.run([path, "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode in (0, 1), result.stderr[-2000:]  # absl's --help exits 1
  assert flag in result.stdout and "Traceback" not in result.stderr


def test_shipped_configs_resolve_by_name(tmp_path, monkeypatch):
  from rrd_jax import config_utils  # pylint: disable=import-outside-toplevel
  monkeypatch.chdir(tmp_path)
  assert config_utils.config_file("mujoco_rrd_sac:hopper") == os.path.join(
      config_utils.CONFIG_DIR, "mujoco_rrd_sac.py") + ":hopper"
  assert config_utils.config_file("configs/libero_rrd.py") == config_utils.DEFAULT_CONFIG_FILE
  assert config_utils.config_file("nothing_here.py") == "nothing_here.py"
