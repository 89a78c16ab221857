"""Shared by the offline tests: the repository root and small configs."""

import os

import numpy as np

from rrd_jax.config import loading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(dataset_dir, **overrides):
  """configs/libero_rrd.py sized for fast tests; overrides as {"section.field": value} kwargs."""
  small = {"data.dataset_dir": dataset_dir, "data.image_size": 40, "data.eval_fraction": 0.25,
           "rrd.sample_size": 4, "rrd.episodes_per_batch": 4, "model.hidden_sizes": (32, 32),
           "train.num_steps": 6, "train.log_every_steps": 2, "eval.every_steps": 3,
           "eval.batches": 1, "eval.episodes": 4, "train.predict_batch_size": 16}
  small.update(overrides)
  return loading.load_config(overrides=small)


def read_episodes(dataset_dir):
  """{file_path: the episode's steps as stacked numpy arrays}, read with tfds (independently of
  rrd_jax's index and pipeline): {"observation": {image, wrist_image, state, joint_state: [T, ...]},
  "action": [T, A], "language_instruction": [T] bytes}."""
  from rrd_jax.data import rlds  # pylint: disable=import-outside-toplevel
  builder = rlds.open_builder(dataset_dir)
  out = {}
  for split in builder.info.splits:
    for episode in builder.as_dataset(split=split):
      steps = list(episode["steps"])
      stack = lambda get: np.stack([get(s).numpy() for s in steps])  # pylint: disable=cell-var-from-loop
      out[episode["episode_metadata"]["file_path"].numpy().decode()] = {
          "observation": {k: stack(lambda s, k=k: s["observation"][k])
                          for k in ("image", "wrist_image", "state", "joint_state")},
          "action": stack(lambda s: s["action"]),
          "language_instruction": stack(lambda s: s["language_instruction"])}
  return out


def damage_frames(shard, record, steps, mode="garbage", key="steps/observation/image"):
  """Rewrites TFRecord `shard` with the encoded frames `steps` of record number `record` damaged:
  "garbage" (bytes that are no image) or "truncated" (the first half of the JPEG). Returns the
  episode's file_path."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
  example = tf.train.Example.FromString(records[record])
  frames = example.features.feature[key].bytes_list.value
  for step in (range(len(frames)) if steps == "all" else steps):
    frames[step] = b"not an image" if mode == "garbage" else frames[step][: len(frames[step]) // 2]
  records[record] = example.SerializeToString()
  with tf.io.TFRecordWriter(shard) as writer:
    for payload in records:
      writer.write(payload)
  return example.features.feature["episode_metadata/file_path"].bytes_list.value[0].decode()
