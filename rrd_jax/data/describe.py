"""Describe an RLDS dataset before training a reward model on it.

python -m rrd_jax.cli.inspect_data DATASET_DIR [--plot OUT.png] [--reward_key reward ...]

Prints the features (flattened keys with shape, dtype and kind), episode and step counts, the
episode length and return distributions, the instructions with their episode counts, and a
WARNING when every episode has (nearly) the same return: return decomposition then has nothing to
learn from, and the remedies are printed. --plot writes length and return histograms (PNG).
Lengths and returns come from rlds.build_index (no image is decoded).
"""

import collections
import dataclasses
import os

import numpy as np

from rrd_jax.data import rlds
from rrd_jax.data import returns as returns_lib
from rrd_jax.util.errors import UserError

MAX_INSTRUCTIONS = 40  # listed in the report; the rest are counted


def describe_feature(feature):
  """(kind, shape, dtype) strings, e.g. ('Image jpeg', '(256, 256, 3)', 'uint8')."""
  kind = type(feature).__name__
  encoding = getattr(feature, "encoding_format", None)
  if encoding:
    kind += f" {encoding}"
  return kind, str(tuple(feature.shape)), feature.tf_dtype.name


def summarize(index):
  """The numbers the report prints (JSON-able)."""
  lengths, returns = index.lengths, index.returns
  counts = collections.Counter(index.instructions)
  return {
      "episodes": len(index),
      "steps": int(lengths.sum()),
      "length": {"min": int(lengths.min()), "mean": float(lengths.mean()),
                 "median": float(np.median(lengths)), "max": int(lengths.max())},
      "return": {"min": float(returns.min()), "mean": float(returns.mean()),
                 "std": float(returns.std()), "max": float(returns.max()),
                 "distinct": int(len(np.unique(returns)))},
      "instructions": sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])),
      "constant_returns": bool(returns_lib.returns_are_constant(returns)),
  }


def _keys(builder, overrides):
  """FeatureKeys with the given overrides; the default instruction/file_path keys are dropped
  when the dataset lacks them (a key passed explicitly must exist: build_index checks it)."""
  keys = dataclasses.replace(rlds.FeatureKeys(), **{k: v for k, v in overrides.items()
                                                    if v is not None})
  flat = {key for key, _ in rlds.flat_features(builder.info.features)}
  if overrides.get("instruction") is None and "steps/" + keys.instruction not in flat:
    keys = dataclasses.replace(keys, instruction="")
  if overrides.get("file_path") is None and keys.file_path not in flat:
    keys = dataclasses.replace(keys, file_path="")
  return keys


def _fmt(value):
  return f"{value:.6g}"


def report_lines(builder, index, summary, reward_key="reward"):
  """The report, as lines of text."""
  info = builder.info
  lines = [f"Dataset {index.dataset_dir}",
           f"  name {info.name}, version {info.version}, splits: "
           + ", ".join(f"{name} ({split.num_examples} episodes, {split.num_shards} shards)"
                       for name, split in sorted(info.splits.items())),
           "Features:"]
  leaves = sorted((key, *describe_feature(feature))
                  for key, feature in rlds.flat_features(info.features))
  width = max(len(key) for key, *_ in leaves)
  for key, kind, shape, dtype in leaves:
    lines.append(f"  {key:<{width}}  {shape:<14} {dtype:<8} {kind}")
  lines.append(f"Episodes: {summary['episodes']}   Steps: {summary['steps']}")
  left_out = getattr(index, "report", None)
  if left_out is not None and left_out.describe():
    lines.append(f"  (not counted: {left_out.describe()})")
  length, ret = summary["length"], summary["return"]
  lines.append(f"Length: min {length['min']}  mean {length['mean']:.1f}  "
               f"median {_fmt(length['median'])}  max {length['max']}")
  lines.append(f"Return (sum of steps/{reward_key}): min {_fmt(ret['min'])}  "
               f"mean {_fmt(ret['mean'])}  std {_fmt(ret['std'])}  max {_fmt(ret['max'])}  "
               f"({ret['distinct']} distinct value{'s' if ret['distinct'] != 1 else ''})")
  instructions = summary["instructions"]
  if any(text for text, _ in instructions):
    lines.append(f"Instructions ({len(instructions)}):")
    for text, count in instructions[:MAX_INSTRUCTIONS]:
      lines.append(f"  {count:>6}  {text or '(empty)'}")
    if len(instructions) > MAX_INSTRUCTIONS:
      lines.append(f"  ... and {len(instructions) - MAX_INSTRUCTIONS} more")
  else:
    lines.append("Instructions: none")
  if summary["constant_returns"]:
    lines.append(f"WARNING: the episode returns are (nearly) constant (mean {_fmt(ret['mean'])}, "
                 f"std {_fmt(ret['std'])}, {ret['distinct']} distinct value"
                 f"{'s' if ret['distinct'] != 1 else ''}), so return decomposition has nothing to "
                 f"learn from; {returns_lib.CONSTANT_RETURN_REMEDY}.")
  return lines


def _first(candidates, preferred=(), containing=()):
  """The first of `preferred` among candidates, else the first (sorted) containing one of the
  words in `containing`, else ""."""
  for key in preferred:
    if key in candidates:
      return key
  for word in containing:
    for key in candidates:
      if word in key.rsplit("/", 1)[-1]:
        return key
  return ""


def suggested_keys(builder):
  """{config.data field: step feature} a reward model would read, found by name and kind: the
  main camera (observation/image, else the first non-wrist RGB image, e.g. image_0), a wrist
  camera, the state vector, the action and the instruction."""
  kinds = rlds.step_features_by_kind(builder)
  images = [k for k in kinds["image"] if k.startswith("observation/")] or kinds["image"]
  wrist = _first(images, ("observation/wrist_image",), ("wrist",))
  others = [k for k in images if k != wrist]
  main = _first(others, ("observation/image",), ("image", "rgb")) or (others or [""])[0]
  vectors = [k for k in kinds["vector"] if k != "action"]
  observed = [k for k in vectors if k.startswith("observation/")] or vectors
  state = _first(observed, ("observation/state",), ("state", "proprio")) or (observed or [""])[0]
  action = _first(kinds["vector"], ("action",), ("action",))
  instruction = _first(kinds["text"], ("language_instruction",), ("instruction", "language"))
  return {"image_key": main, "wrist_image_key": wrist, "proprio_key": state,
          "action_key": action, "instruction_key": instruction}


def suggested_command(builder, summary, dataset_dir):
  """A ready-to-paste `rrd-train` command line for this dataset (keys that differ from the
  config's defaults are set; a return definition is chosen when the returns are constant), with
  one line per choice it made."""
  keys = suggested_keys(builder)
  defaults = rlds.FeatureKeys()
  default_of = {"image_key": defaults.image, "wrist_image_key": defaults.wrist_image,
                "proprio_key": defaults.proprio, "action_key": defaults.action,
                "instruction_key": defaults.instruction}
  variant, flags_, notes = "", [], []
  if not keys["proprio_key"] or not keys["action_key"]:
    return [f"No {'state' if not keys['proprio_key'] else 'action'} vector among the step "
            "features: set --config.data.proprio_key / --config.data.action_key by hand."]
  if not keys["image_key"]:
    variant = ":mlp"
    notes.append("no RGB camera: the state model (libero_rrd:mlp)")
  instructions = [text for text, _ in summary["instructions"] if text]
  if summary["constant_returns"]:
    if keys["instruction_key"] and len(instructions) >= 2:
      variant = variant or ":demos"
      notes.append("constant returns: the demos recipe (time penalty + instruction negatives)")
    else:
      flags_.append("--config.returns.kind=time_penalty")
      notes.append("constant returns: R = return - 0.01*T (returns.kind=time_penalty)")
    if summary["return"]["max"] <= 0:
      flags_.append("--config.returns.success=all")
      notes.append("no episode has a positive return: every demo counts as a success "
                   "(returns.success=all)")
  for field, key in keys.items():
    if field == "wrist_image_key":
      continue
    if key != default_of[field] and (key or field == "instruction_key"):
      flags_.append(f"--config.data.{field}={key}")
  episode_keys = {key for key, _ in rlds.flat_features(builder.info.features)}
  if defaults.file_path not in episode_keys:
    flags_.append("--config.data.file_path_key=")
  if keys["wrist_image_key"]:
    notes.append(f"wrist camera {keys['wrist_image_key']}: add --config.model.use_wrist=True "
                 "to use it" + (f" (and --config.data.wrist_image_key={keys['wrist_image_key']})"
                                if keys["wrist_image_key"] != defaults.wrist_image else ""))
  name = os.path.basename(os.path.dirname(os.path.abspath(dataset_dir))) or "run"
  command = (f"rrd-train --config libero_rrd{variant} --workdir runs/{name} "
             f"--config.data.dataset_dir={os.path.abspath(dataset_dir)}")
  lines = ["Train a reward model on it:", "  " + " ".join([command, *flags_])]
  used = ", ".join(f"{field.replace('_key', '')} {key}" for field, key in keys.items()
                   if key and field != "wrist_image_key")
  lines.append(f"  (reads: {used}" + "".join(f"; {note}" for note in notes) + ")")
  return lines


def _check_plot_path(path):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib.backend_bases import FigureCanvasBase  # pylint: disable=import-outside-toplevel
  path = os.path.abspath(os.path.expanduser(path))
  extension = os.path.splitext(path)[1].lstrip(".").lower()
  supported = FigureCanvasBase.get_supported_filetypes()
  if extension not in supported:
    raise UserError(f"--plot {path}: unsupported image type {extension or '(no extension)'!r}; "
                    "use a .png (or .pdf/.svg) file name")
  parent = os.path.dirname(path)
  if not os.path.isdir(parent):
    raise UserError(f"--plot {path}: directory {parent} does not exist")
  if os.path.isdir(path) or not os.access(parent, os.W_OK):
    raise UserError(f"--plot {path} is not a writable file path")
  return path


def write_plot(path, index):
  """Length and return histograms side by side."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
  low, high = int(index.lengths.min()), int(index.lengths.max())
  left.hist(index.lengths, bins=np.arange(low, high + 2) - 0.5 if high - low < 50 else 50,
            color="C0")
  left.set_xlabel("episode length (steps)")
  left.set_ylabel("episodes")
  left.set_title(f"{len(index)} episodes, {int(index.lengths.sum())} steps", fontsize=9)
  right.hist(index.returns, bins=min(50, max(1, len(np.unique(index.returns)))), color="C1")
  right.set_xlabel("episode return")
  right.set_title(f"return mean {index.returns.mean():.3g}, std {index.returns.std():.3g}",
                  fontsize=9)
  fig.tight_layout()
  try:
    fig.savefig(path, dpi=100)
  except (OSError, ValueError) as e:
    raise UserError(f"--plot {path} could not be written ({e})") from None
  finally:
    plt.close(fig)


def inspect_dataset(dataset_dir, plot="", reward_key=None, instruction_key=None,
                    file_path_key=None, proprio_key=None, action_key=None, log=print):
  """Prints the report (and writes the plot); returns the summary dict."""
  plot_path = _check_plot_path(plot) if plot else ""
  builder = rlds.open_builder(dataset_dir)
  keys = _keys(builder, {"reward": reward_key, "instruction": instruction_key,
                         "file_path": file_path_key, "proprio": proprio_key, "action": action_key})
  index = rlds.build_index(builder, keys, skip_bad=True)
  if len(index) == 0 or int(index.lengths.sum()) == 0:
    raise UserError(f"dataset {builder.data_dir} has no steps")
  summary = summarize(index)
  for line in report_lines(builder, index, summary, keys.reward):
    log(line)
  for line in suggested_command(builder, summary, dataset_dir):
    log(line)
  if plot_path:
    write_plot(plot_path, index)
    log(f"Wrote {plot_path}")
  return summary
