"""The codebase's shape: data flows one way through the modules, functions stay short, one module
owns the orbax checkpoint manager, and the package installs with its console scripts."""

import ast
import importlib.metadata
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGE = os.path.join(ROOT, "rrd_jax")
# The layers are the sub-packages: each one's docstring opens with "Layer N, name:", and a module
# may import its own layer and the layers below it, never one above.
LAYER_LINE = re.compile(r"Layer (\d+), (\w+):")
CONSOLE_SCRIPTS = ("rrd-train", "rrd-predict", "rrd-relabel", "rrd-inspect", "rrd-convert-libero",
                   "rrd-legacy", "rrd-plot-runs")


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


def _layers():
  """{sub-package name: (layer number, layer name)}, read from each sub-package's docstring."""
  layers = {}
  for name in sorted(os.listdir(PACKAGE)):
    init = os.path.join(PACKAGE, name, "__init__.py")
    if os.path.isfile(init):
      match = LAYER_LINE.match(ast.get_docstring(ast.parse(open(init, encoding="utf-8").read()))
                               or "")
      assert match, f"rrd_jax/{name}/__init__.py: its docstring must open with 'Layer N, {name}:'"
      assert match.group(2) == name, (name, match.group(0))
      layers[name] = (int(match.group(1)), name)
  return layers


def _layer(module):
  return _layers().get(module.split(".")[0], (None,))[0]


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


def test_every_module_is_in_a_layer():
  """No loose modules: everything but rrd_jax/__init__.py sits in a layer's sub-package, and the
  layer numbers are distinct."""
  unplaced = [m for m in _modules() if m != "__init__" and _layer(m) is None]
  assert not unplaced, f"move these modules into a layer's sub-package: {unplaced}"
  numbers = sorted(number for number, _ in _layers().values())
  assert numbers == list(range(len(numbers))), numbers


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
        back_edges.append(f"{module} (layer {here}) imports {imported} (layer {there})")
  assert not back_edges, "\n".join(back_edges)


def test_functions_are_at_most_80_lines():
  """In the package and in benchmarks/ alike."""
  paths = list(_modules().values())
  for root, _, names in os.walk(os.path.join(ROOT, "benchmarks")):
    paths += [os.path.join(root, name) for name in names if name.endswith(".py")]
  long = []
  for path in paths:
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > 80:
          long.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name}: {lines} lines")
  assert not long, long


def test_one_module_defines_the_checkpoint_manager():
  owners = [m for m, path in _modules().items()
            if "CheckpointManager(" in open(path, encoding="utf-8").read()]
  assert owners == ["run.checkpoint"]


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
  from rrd_jax.config import loading  # pylint: disable=import-outside-toplevel
  monkeypatch.chdir(tmp_path)
  assert loading.config_file("mujoco_rrd_sac:hopper") == os.path.join(
      loading.CONFIG_DIR, "mujoco_rrd_sac.py") + ":hopper"
  assert loading.config_file("configs/libero_rrd.py") == loading.DEFAULT_CONFIG_FILE
  assert loading.config_file("nothing_here.py") == "nothing_here.py"


def _config_get_calls(tree):
  """`<config expression>.get("field", ...)` calls: a config read with a fallback default."""
  def is_config(node):
    while isinstance(node, ast.Attribute):
      if node.attr in ("model", "optim", "data", "returns", "train", "rrd", "eval"):
        return True
      node = node.value
    return isinstance(node, ast.Name) and (node.id == "config" or node.id.endswith("_config"))
  return [node.lineno for node in ast.walk(tree)
          if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant)
          and is_config(node.func.value)]


def test_config_fields_are_read_without_fallback_defaults():
  """The config files define every default (saved configs are upgraded in one place,
  config/schema.py's upgrade): no inner module reads a field with a `.get(field, default)` that
  could disagree with them."""
  found = []
  for module, path in _modules().items():
    lines = _config_get_calls(ast.parse(open(path, encoding="utf-8").read()))
    found += [f"rrd_jax/{module.replace('.', '/')}.py:{line}" for line in lines]
  assert not found, found
