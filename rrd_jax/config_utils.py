"""Config checks (one-sentence errors) and the resolved config.json of a run."""

import importlib.util
import json
import os

import ml_collections

from rrd_jax.checkpoint import is_checkpoint_name
from rrd_jax.data import CACHE_KINDS
from rrd_jax.data.returns import RETURN_KINDS
from rrd_jax.data.sampling import EPISODE_WEIGHTINGS
from rrd_jax.errors import UserError
from rrd_jax.losses import LOSS_FORMS
from rrd_jax.models import DTYPES, MIN_PIXEL_IMAGE_SIZE, MODEL_KINDS


def _check(condition, message):
  if not condition:
    raise UserError(message)


def validate(config):
  """Raises UserError naming the first invalid value."""
  rrd, data, model, train = config.rrd, config.data, config.model, config.train
  _check(rrd.sample_size >= 1, f"rrd.sample_size must be >= 1, got {rrd.sample_size}")
  _check(not rrd.bias_correction or rrd.sample_size >= 2,
         f"rrd.bias_correction needs rrd.sample_size >= 2, got {rrd.sample_size}")
  _check(rrd.episodes_per_batch >= 1,
         f"rrd.episodes_per_batch must be >= 1, got {rrd.episodes_per_batch}")
  _check(rrd.loss_form in LOSS_FORMS,
         f"rrd.loss_form must be one of {', '.join(LOSS_FORMS)}, got {rrd.loss_form!r}")
  _check(data.image_size > 0, f"data.image_size must be > 0, got {data.image_size}")
  _check(model.kind != "pixel" or data.image_size >= MIN_PIXEL_IMAGE_SIZE,
         f"data.image_size must be >= {MIN_PIXEL_IMAGE_SIZE} for the pixel model's conv trunk, "
         f"got {data.image_size}")
  _check(data.episode_weighting in EPISODE_WEIGHTINGS,
         f"data.episode_weighting must be one of {', '.join(EPISODE_WEIGHTINGS)}, "
         f"got {data.episode_weighting!r}")
  _check(0.0 <= data.eval_fraction < 1.0,
         f"data.eval_fraction must be in [0, 1), got {data.eval_fraction}")
  _check(model.kind in MODEL_KINDS,
         f"model.kind must be one of {', '.join(MODEL_KINDS)}, got {model.kind!r}")
  _check(model.dtype in DTYPES,
         f"model.dtype must be one of {', '.join(DTYPES)}, got {model.dtype!r}")
  _check(train.num_steps >= 0, f"train.num_steps must be >= 0, got {train.num_steps}")
  for key in ("log_every", "eval_every", "predict_batch_size"):
    _check(train[key] >= 1, f"train.{key} must be >= 1, got {train[key]}")
  _check(config.optim.learning_rate > 0,
         f"optim.learning_rate must be > 0, got {config.optim.learning_rate}")
  _check(config.checkpoint.every_steps >= 0,
         f"checkpoint.every_steps must be >= 0, got {config.checkpoint.every_steps}")
  _check(config.checkpoint.keep >= 1, f"checkpoint.keep must be >= 1, got {config.checkpoint.keep}")
  _check(config.profile.start_step >= 0 and config.profile.num_steps >= 1,
         f"profile.start_step must be >= 0 and profile.num_steps >= 1, got "
         f"{config.profile.start_step} and {config.profile.num_steps}")
  _check(data.cache in CACHE_KINDS,
         f"data.cache must be one of {', '.join(CACHE_KINDS)}, got {data.cache!r}")
  _validate_returns(config)
  _check(is_checkpoint_name(config.checkpoint.restore),
         f"checkpoint.restore must be latest, best or a step number, "
         f"got {str(config.checkpoint.restore)!r}")


def _validate_returns(config):
  returns = config.returns
  _check(returns.kind in RETURN_KINDS,
         f"returns.kind must be one of {', '.join(RETURN_KINDS)}, got {returns.kind!r}")
  _check(returns.time_penalty >= 0, f"returns.time_penalty must be >= 0, got {returns.time_penalty}")
  _check(0.0 <= returns.negatives_ratio < 1.0,
         f"returns.negatives_ratio must be in [0, 1), got {returns.negatives_ratio}")
  _check(returns.negatives_ratio == 0 or config.model.use_instruction,
         f"returns.negatives_ratio={returns.negatives_ratio} needs model.use_instruction=True "
         "(negatives differ from positives only in their instruction)")
  for name, component in (config.data.get("mixture") or {}).items():
    prefix = f"data.mixture.{name}"
    for field in ("dataset_dir", "weight", "returns_kind", "time_penalty"):
      _check(field in component, f"{prefix} has no field {field!r}; define components with "
             "configs/libero_rrd.py's mixture_component")
    _check(component.weight > 0, f"{prefix}.weight must be > 0, got {component.weight}")
    _check(component.returns_kind in RETURN_KINDS,
           f"{prefix}.returns_kind must be one of {', '.join(RETURN_KINDS)}, "
           f"got {component.returns_kind!r}")
    _check(component.time_penalty >= 0,
           f"{prefix}.time_penalty must be >= 0, got {component.time_penalty}")


def write_run_config(path, config, extra):
  """WORKDIR/config.json: the resolved config plus run facts (dataset, vocabulary, checkpoints)."""
  record = {"config": json.loads(config.to_json_best_effort()), **extra}
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)


def read_run_config(workdir):
  """(ConfigDict, run facts) from WORKDIR/config.json."""
  path = os.path.join(os.path.expanduser(workdir), "config.json")
  if not os.path.exists(path):
    raise UserError(f"{path} does not exist: --workdir must be the directory of a training run")
  with open(path, encoding="utf-8") as f:
    record = json.load(f)
  config = ml_collections.ConfigDict(record.pop("config"))
  return config, record


DEFAULT_CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "configs", "libero_rrd.py")


def apply_overrides(config, overrides):
  """Sets {"section.field": value} entries on a ConfigDict (unknown keys raise UserError)."""
  for key, value in overrides.items():
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
  spec = importlib.util.spec_from_file_location("rrd_jax_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return apply_overrides(module.get_config(variant), overrides or {})
