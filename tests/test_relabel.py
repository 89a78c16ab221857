"""relabel: a TFDS copy of the dataset with steps/learned_reward, images byte-identical, readable
by tfds.builder_from_directory, resumable shard by shard."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rrd_jax.cli import train
from rrd_jax.infer import predict, relabel
from rrd_jax.util.errors import UserError
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)


@pytest.fixture(scope="module")
def run(tiny_dataset_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("relabel_run") / "w")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir), workdir, log=lambda *_: None)
  out = str(tmp_path_factory.mktemp("relabel_pred") / "p")
  predict.predict_dataset(workdir, out, plot=False, log=lambda *_: None)
  return workdir, np.load(os.path.join(out, "predicted_rewards.npz"))


def records(directory):
  builder = tfds.builder_from_directory(directory)
  paths = [f.filename for f in builder.info.splits["train"].file_instructions]
  return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(paths)]


def floats(example, key):
  return np.asarray(example.features.feature[key].float_list.value, np.float32)


def test_relabelled_dataset_round_trips(run, tiny_dataset_dir, tmp_path):
  workdir, predictions = run
  out = relabel.relabel_dataset(workdir, tiny_dataset_dir, str(tmp_path / "out"),
                                log=lambda *_: None)
  original, relabelled = records(tiny_dataset_dir), records(out)
  assert len(relabelled) == len(original) == 16
  for e, (a, b) in enumerate(zip(original, relabelled)):
    fa, fb = a.features.feature, b.features.feature
    assert set(fb) == set(fa) | {"steps/learned_reward"}
    for key in fa:  # every original feature, images included, byte-identical
      assert fa[key] == fb[key], key
    mask = predictions["episode"] == e
    np.testing.assert_allclose(floats(b, "steps/learned_reward"), predictions["reward"][mask],
                               rtol=1e-6, atol=1e-7)
  # Readable through tfds's own decoding, with the new feature in the spec.
  builder = tfds.builder_from_directory(out)
  assert "learned_reward" in builder.info.features["steps"].feature
  episodes = list(builder.as_dataset(split="train", shuffle_files=False).take(2))
  steps = list(episodes[0]["steps"].as_numpy_iterator())
  assert steps[0]["observation"]["image"].shape == (40, 40, 3)
  np.testing.assert_allclose([s["learned_reward"] for s in steps],
                             predictions["reward"][predictions["episode"] == 0], rtol=1e-6)


def test_replace_reward(run, tiny_dataset_dir, tmp_path):
  workdir, predictions = run
  out = relabel.relabel_dataset(workdir, tiny_dataset_dir, str(tmp_path / "out"),
                                replace_reward=True, log=lambda *_: None)
  for e, example in enumerate(records(out)):
    mask = predictions["episode"] == e
    np.testing.assert_allclose(floats(example, "steps/reward"), predictions["reward"][mask],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(floats(example, "steps/reward"),
                                  floats(example, "steps/learned_reward"))


def test_interrupted_relabel_resumes(run, tiny_dataset_dir, tmp_path, monkeypatch):
  workdir, _ = run
  out = str(tmp_path / "out")
  calls = {"n": 0}
  original_predict = predict.RunPredictor.predict

  def failing_predict(self, episode_ids, progress=None):
    calls["n"] += 1
    if calls["n"] == 2:
      raise KeyboardInterrupt("simulated interruption during the second shard")
    return original_predict(self, episode_ids, progress)

  monkeypatch.setattr(predict.RunPredictor, "predict", failing_predict)
  with pytest.raises(KeyboardInterrupt):
    relabel.relabel_dataset(workdir, tiny_dataset_dir, out, log=lambda *_: None)
  monkeypatch.setattr(predict.RunPredictor, "predict", original_predict)
  assert not os.path.exists(os.path.join(out, "dataset_info.json"))
  done = sorted(n for n in os.listdir(out) if ".tfrecord-" in n and not n.endswith("incomplete"))
  assert len(done) == 1
  first = os.path.join(out, done[0])
  mtime = os.stat(first).st_mtime_ns
  lines = []
  relabel.relabel_dataset(workdir, tiny_dataset_dir, out, log=lines.append)
  assert lines[0].startswith("Resuming")
  assert os.stat(first).st_mtime_ns == mtime  # finished shards are not redone
  reference = relabel.relabel_dataset(workdir, tiny_dataset_dir, str(tmp_path / "reference"),
                                      log=lambda *_: None)
  assert [r.SerializeToString() for r in records(out)] == [
      r.SerializeToString() for r in records(reference)]
  with pytest.raises(UserError, match="already holds a dataset"):
    relabel.relabel_dataset(workdir, tiny_dataset_dir, out, log=lambda *_: None)


def test_relabel_refuses_an_out_inside_the_source(run, tiny_dataset_dir):
  from rrd_jax.util.errors import UserError  # pylint: disable=import-outside-toplevel
  inside = os.path.join(tiny_dataset_dir, "relabelled")
  with pytest.raises(UserError, match="is inside the source dataset"):
    relabel.relabel_dataset(run[0], tiny_dataset_dir, inside, log=lambda *_: None)
  assert not os.path.exists(inside)
