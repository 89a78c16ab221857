"""Config files and saved configs: loading a config file (by path or shipped name) with overrides,
and a run's config.json (the resolved config plus run facts). Old field names are read through
rrd_jax/config/schema.py's mapping."""

import importlib.util
import json
import os
import sys

import ml_collections

from rrd_jax.config import schema
from rrd_jax.util import files
from rrd_jax.util.errors import UserError


def write_run_config(path, config, extra):
  """WORKDIR/config.json: the resolved config plus run facts (dataset, vocabulary, checkpoints)."""
  files.write_json(path, {"config": json.loads(config.to_json_best_effort()), **extra})


def read_run_config(workdir):
  """(ConfigDict, run facts) from WORKDIR/config.json."""
  path = os.path.join(os.path.expanduser(workdir), "config.json")
  if not os.path.exists(path):
    raise UserError(f"{path} does not exist: --workdir must be the directory of a training run")
  record = files.read_json(path, "the run's config", "restore it from a copy of the run, or "
                           "choose a new --workdir")
  if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
    raise UserError(f"{path} is not an rrd_jax run's config.json (no 'config' section); "
                    "--workdir must be the directory of a training run")
  config = ml_collections.ConfigDict(schema.upgrade(record.pop("config"), path))
  return config, record


def _config_dir():
  """configs/ of a source checkout, else the copy installed as the rrd_jax.configs package."""
  checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
  if os.path.isdir(checkout):
    return checkout
  spec = importlib.util.find_spec("rrd_jax.configs")
  return list(spec.submodule_search_locations)[0] if spec else checkout


CONFIG_DIR = _config_dir()
DEFAULT_CONFIG_FILE = os.path.join(CONFIG_DIR, "libero_rrd.py")


def config_file(spec):
  """A --config value "PATH[:VARIANT]" with PATH resolved: as given when it exists, else the
  shipped config of that name (`configs/libero_rrd.py`, `libero_rrd.py` and `libero_rrd` all
  find it from any directory, also from an installed package)."""
  path, colon, variant = str(spec).partition(":")
  if not os.path.exists(path):
    name = os.path.basename(path)
    shipped = os.path.join(CONFIG_DIR, name if name.endswith(".py") else name + ".py")
    if name and os.path.exists(shipped):
      path = shipped
  return path + colon + variant


def apply_overrides(config, overrides):
  """Sets {"section.field": value} entries on a ConfigDict (unknown keys raise UserError; old
  field names are set under today's)."""
  kind = schema.run_kind(config)
  for key, value in overrides.items():
    key = schema.upgrade_key(key, kind)
    node = config
    *parents, leaf = key.split(".")
    try:
      for parent in parents:
        node = node[parent]
      if leaf not in node:
        raise KeyError(leaf)
      node[leaf] = value
    except (KeyError, AttributeError):
      raise UserError(f"unknown config key {key!r}") from None
  return config


def load_config(path=DEFAULT_CONFIG_FILE, variant="", overrides=None):
  """get_config(variant) of a config file, with overrides applied."""
  spec = importlib.util.spec_from_file_location("rrd_jax_config_file", config_file(path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return apply_overrides(module.get_config(variant), overrides or {})


def resolve_config_argv(argv):
  """argv with the value of --config (either form) resolved by `config_file`, and --config.FIELD
  overrides under old field names renamed (one deprecation line)."""
  out, renamed = list(argv), []
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + config_file(arg.split("=", 1)[1])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = config_file(out[i + 1])
    elif arg.startswith("--config."):
      field, equals, value = arg[len("--config."):].partition("=")
      new = schema.upgrade_key(field)
      if new != field:
        out[i] = f"--config.{new}{equals}{value}"
        renamed.append(f"{field} -> {new}")
  if renamed:
    print(f"note: --config overrides use old config names ({'; '.join(renamed)}); read as "
          "today's names.", file=sys.stderr)
  return out
