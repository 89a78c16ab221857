"""Write a copy of an RLDS dataset with the learned reward added to every step.

python -m rrd_jax.cli.relabel --workdir RUN --dataset_dir D --out OUT [--replace_reward]

OUT is a TFDS dataset version directory (open it with tfds.builder_from_directory) with the same
features plus a float32 step field `learned_reward` (with --replace_reward, `reward` holds the
learned reward too). Records are edited at the tf.train.Example level, so images are copied byte
for byte, never re-encoded. Work goes shard by shard (one shard's predictions in memory), each
shard written to a temporary file and renamed when complete; rerunning the same command resumes
with the first unfinished shard. dataset_info.json is written last and marks a finished copy.
"""

import collections
import json
import os
import shutil

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from rrd_jax.data import rlds
from rrd_jax.infer.predict import RunPredictor
from rrd_jax.util import files
from rrd_jax.util.errors import UserError
from rrd_jax.util.progress import progress_bar

LEARNED_REWARD = "learned_reward"
PROGRESS_FILE = "relabel.json"


def relabeled_features(features, reward_key):
  """The dataset's FeaturesDict with a float32 `learned_reward` step feature added."""
  steps = dict(features["steps"].feature.items())
  if LEARNED_REWARD in steps:
    raise UserError(f"the dataset already has a 'steps/{LEARNED_REWARD}' feature")
  steps[LEARNED_REWARD] = tfds.features.Scalar(
      dtype=np.float32, doc=f"Learned RRD reward (rrd_jax); '{reward_key}' is the original.")
  top = dict(features.items())
  top["steps"] = tfds.features.Dataset(steps)
  return tfds.features.FeaturesDict(top)


def relabel_record(serialized, rewards, reward_key, replace_reward):
  """Adds steps/learned_reward (and optionally overwrites steps/<reward_key>) in a serialized
  tf.train.Example; every other feature, images included, is left byte-identical."""
  example = tf.train.Example.FromString(serialized)
  feature = example.features.feature
  feature["steps/" + LEARNED_REWARD].float_list.value[:] = rewards.tolist()
  if replace_reward:
    feature["steps/" + reward_key].float_list.value[:] = rewards.tolist()
  return example.SerializeToString()


def _refuse_out_dir(out_dir):
  """Refuses an --out that cannot receive a new dataset, before any work (nothing is written)."""
  if os.path.exists(os.path.join(out_dir, "dataset_info.json")):
    raise UserError(f"output directory {out_dir} already holds a dataset; choose a new --out")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise UserError(f"output path {out_dir} exists and is not a directory; choose a new --out")
  if (os.path.isdir(out_dir) and os.listdir(out_dir) and
      not os.path.exists(os.path.join(out_dir, PROGRESS_FILE))):
    raise UserError(f"output directory {out_dir} is not empty; choose a new --out")


def _check_out_dir(out_dir, request):
  _refuse_out_dir(out_dir)
  progress_path = os.path.join(out_dir, PROGRESS_FILE)
  if os.path.exists(progress_path):
    try:
      with open(progress_path, encoding="utf-8") as f:
        previous = json.load(f)["request"]
    except (OSError, ValueError, KeyError, TypeError):  # torn by a crash: a fresh start is safe
      previous = None
    if previous != request:
      raise UserError(f"output directory {out_dir} holds an unfinished relabelling of another "
                      f"run or dataset ({progress_path}); choose a new --out")
    return True
  try:
    os.makedirs(out_dir, exist_ok=True)
    files.write_json(progress_path, {"request": request})
  except OSError as e:
    raise UserError(f"output directory {out_dir} cannot be written ({e.strerror})") from None
  return False


def relabel_dataset(workdir, dataset_dir, out_dir, replace_reward=False, batch_size=0,
                    checkpoint_name="", log=print):
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  _refuse_out_dir(out_dir)
  predictor = RunPredictor(workdir, dataset_dir, batch_size, checkpoint_name)
  source = os.path.realpath(predictor.dataset_dir)
  if os.path.commonpath([os.path.realpath(out_dir), source]) == source:
    raise UserError(f"--out {out_dir} is inside the source dataset {predictor.dataset_dir}; "
                    "choose a directory outside it")
  request = {"workdir": predictor.workdir, "dataset_dir": predictor.dataset_dir,
             "checkpoint_step": predictor.step, "replace_reward": bool(replace_reward)}
  resumed = _check_out_dir(out_dir, request)
  index, builder = predictor.index, predictor.builder
  reward_key = predictor.loader.keys.reward
  features = relabeled_features(builder.info.features, reward_key)
  log(f"{'Resuming' if resumed else 'Writing'} {out_dir}: {len(index.shard_paths)} shards, "
      f"{len(index)} episodes, learned reward from {predictor.describe()} of {workdir}.")
  bar = progress_bar(len(index), "relabel", unit="episode")
  for shard_id, shard_path in enumerate(index.shard_paths):
    episode_ids = np.flatnonzero(index.shard_ids == shard_id)
    target = os.path.join(out_dir, os.path.basename(shard_path))
    if os.path.exists(target):
      bar.update(len(episode_ids))
      continue
    predicted, _ = predictor.predict(episode_ids)
    partial = target + ".incomplete"
    with tf.io.TFRecordWriter(partial) as writer:
      for episode_id, rewards in zip(episode_ids, predicted):
        raw = rlds.read_record(shard_path, int(index.offsets[episode_id]))
        writer.write(relabel_record(raw, rewards, reward_key, replace_reward))
        bar.update(1)
    os.replace(partial, target)
  bar.close()
  features.save_config(out_dir)
  for name in ("metadata.json",):
    if os.path.exists(os.path.join(builder.data_dir, name)):
      shutil.copy(os.path.join(builder.data_dir, name), os.path.join(out_dir, name))
  with open(os.path.join(builder.data_dir, "dataset_info.json"), encoding="utf-8") as f:
    info = json.load(f)
  kept = collections.Counter(os.path.basename(index.shard_paths[i]) for i in index.shard_ids)
  for split in info.get("splits", []):
    pattern = f"{info['name']}-{split['name']}."
    names = sorted(n for n in os.listdir(out_dir) if n.startswith(pattern))
    split["numBytes"] = str(sum(os.path.getsize(os.path.join(out_dir, n)) for n in names))
    # episodes the index left out (too short, or skipped as bad) are not in the copy
    split["shardLengths"] = [str(kept.get(n, 0)) for n in names]
  info["description"] = (info.get("description", "") +
                         f"\n\nRelabelled by rrd_jax: steps/{LEARNED_REWARD} from {workdir}.")
  files.write_json(os.path.join(out_dir, "dataset_info.json"), info)
  os.remove(os.path.join(out_dir, PROGRESS_FILE))
  log(f"Wrote {out_dir} (open with tfds.builder_from_directory).")
  return out_dir
