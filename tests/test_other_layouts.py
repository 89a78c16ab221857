"""Datasets beyond LIBERO's layout, as a new user meets them: an Open X-Embodiment style dataset
(cameras observation/image_0 and image_1, a 7-d state, reward 0 on every step, several
instructions). inspect suggests a working train command; wrong keys name the features of the
right kind; constant returns are warned about at train start; returns.success=all makes the demos
recipe learn from demos with no reward labels."""

import shlex

import numpy as np
import pytest

from rrd_jax.cli import train
from rrd_jax.config import loading
from rrd_jax.data import describe, embedded, returns, rlds
from rrd_jax.train import prepare
from rrd_jax.util.errors import UserError
from tests.helpers import tiny_config

OXE = embedded.EmbeddedParams(num_episodes=90, min_length=10, max_length=30, image_size=40,
                              task="instructed", layout="oxe", num_shards=2)


@pytest.fixture(scope="module")
def oxe_dir(tmp_path_factory):
  return embedded.build_embedded_dataset(str(tmp_path_factory.mktemp("oxe")), OXE)


def test_success_all_makes_every_episode_a_success_with_return_one():
  raw, lengths = np.zeros(3), np.array([10, 20, 30])
  offsets = np.full(3, returns.reward_offset("time_penalty", 0.01), np.float32)
  by_reward = returns.episode_targets(raw, lengths, offsets)
  # demos without reward labels: -c*T < 0 = a negative's return, so negatives would look better
  np.testing.assert_allclose(by_reward.returns, -0.01 * lengths, rtol=1e-6)
  assert not by_reward.success.any()
  every = returns.episode_targets(raw, lengths, offsets, all_success=np.ones(3, bool))
  np.testing.assert_allclose(every.returns, 1.0 - 0.01 * lengths, rtol=1e-6)
  assert every.success.all()
  mixed = returns.episode_targets(np.array([0.0, 2.0]), np.array([10, 10]), np.zeros(2),
                                  all_success=np.array([False, True]))
  np.testing.assert_allclose(mixed.returns, [0.0, 1.0])  # only that component's episodes


def _suggestion(oxe_dir):
  builder = rlds.open_builder(oxe_dir)
  index = rlds.build_index(builder, rlds.FeatureKeys())
  return describe.suggested_command(builder, describe.summarize(index), oxe_dir)


def test_inspect_suggests_the_keys_and_the_return_definition(oxe_dir):
  keys = describe.suggested_keys(rlds.open_builder(oxe_dir))
  assert keys == {"image_key": "observation/image_0", "wrist_image_key": "",
                  "proprio_key": "observation/state", "action_key": "action",
                  "instruction_key": "language_instruction"}
  lines = _suggestion(oxe_dir)
  command = shlex.split(lines[1])
  assert command[:3] == ["rrd-train", "--config", "libero_rrd:demos"]
  assert f"--config.data.dataset_dir={oxe_dir}" in command
  assert "--config.data.image_key=observation/image_0" in command
  assert "--config.returns.success=all" in command
  assert "returns.success=all" in lines[2]


def test_inspect_suggests_the_state_model_without_a_camera_and_names_a_wrist_camera(monkeypatch):
  kinds = {"image": [], "vector": ["action", "observation/joint_pos", "observation/proprio"],
           "number": ["reward"], "text": []}
  # the feature listing is all suggested_keys reads of the builder
  monkeypatch.setattr(rlds, "step_features_by_kind", lambda builder: builder)
  keys = describe.suggested_keys(kinds)
  assert (keys["image_key"], keys["proprio_key"], keys["instruction_key"]) == (
      "", "observation/proprio", "")
  kinds["image"] = ["observation/agentview_rgb", "observation/eye_in_hand_wrist_rgb"]
  keys = describe.suggested_keys(kinds)
  assert (keys["image_key"], keys["wrist_image_key"]) == ("observation/agentview_rgb",
                                                         "observation/eye_in_hand_wrist_rgb")


@pytest.mark.parametrize("field, value, listed, not_listed", [
    ("data.image_key", "observation/image", "observation/image_0, observation/image_1",
     "observation/state"),
    ("data.proprio_key", "observation/joint_state", "action, observation/state",
     "observation/image_0"),
    ("data.instruction_key", "instruction", "language_instruction", "observation/state"),
])
def test_a_missing_key_lists_the_features_of_its_kind(oxe_dir, field, value, listed, not_listed):
  config = tiny_config(oxe_dir, **{field: value})
  with pytest.raises(UserError) as raised:
    prepare.open_training_data(config, log=lambda *_: None)
  message = str(raised.value)
  assert message.startswith(f"{field}: feature 'steps/{value}' not found"), message
  assert listed in message and not_listed not in message, message


def test_training_warns_at_start_when_every_return_is_the_same(oxe_dir):
  lines = []
  config = tiny_config(oxe_dir, **{"data.image_key": "observation/image_0"})
  prepare.open_training_data(config, log=lines.append)
  warning = [line for line in lines if line.startswith("WARNING")]
  assert len(warning) == 1 and "same return (0," in warning[0]
  assert "returns.success=all" in warning[0] and "time_penalty" in warning[0]
  lines.clear()
  config = tiny_config(oxe_dir, **{"data.image_key": "observation/image_0",
                                   "returns.kind": "time_penalty", "returns.success": "all"})
  prepare.open_training_data(config, log=lines.append)
  assert not [line for line in lines if line.startswith("WARNING")]


@pytest.mark.slow
def test_the_suggested_command_learns_the_instructions_from_demos_without_rewards(oxe_dir,
                                                                                   tmp_path):
  """inspect's command (the demos recipe with returns.success=all), sized down for a CPU: the
  held-out instruction AUC (own vs. another task's instruction) ends well above chance."""
  command = shlex.split(_suggestion(oxe_dir)[1])
  variant = command[2].partition(":")[2]
  overrides = dict(arg[len("--config."):].split("=", 1) for arg in command[3:]
                   if arg.startswith("--config."))
  overrides.update({"data.image_size": 40, "model.hidden_sizes": (128, 128),
                    "rrd.sample_size": 8, "rrd.episodes_per_batch": 16, "train.num_steps": 500,
                    "eval.every_steps": 250, "eval.episodes": 40, "eval.batches": 2,
                    "data.eval_fraction": 0.3, "checkpoint.every_steps": 0,
                    "train.predict_batch_size": 64})
  config = loading.load_config(variant=variant, overrides=overrides)
  assert config.returns.success == "all" and config.returns.negatives_ratio > 0
  results = train.train_and_evaluate(config, str(tmp_path / "w"), log=lambda *_: None)
  assert results["eval/instruction_auc"] >= 0.7, results


@pytest.mark.slow
def test_a_relabelled_oxe_dataset_opens_with_tfds_and_keeps_every_feature(oxe_dir, tmp_path):
  from rrd_jax.infer import predict, relabel  # pylint: disable=import-outside-toplevel
  from tests.test_relabel import floats, records  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "w")
  config = tiny_config(oxe_dir, **{"data.image_key": "observation/image_0",
                                   "returns.kind": "time_penalty", "returns.success": "all"})
  train.train_and_evaluate(config, workdir, log=lambda *_: None)
  predict.predict_dataset(workdir, str(tmp_path / "p"), plot=False, log=lambda *_: None)
  predictions = np.load(tmp_path / "p" / "predicted_rewards.npz")
  out = relabel.relabel_dataset(workdir, oxe_dir, str(tmp_path / "out"), log=lambda *_: None)
  original, relabelled = records(oxe_dir), records(out)
  assert len(relabelled) == len(original) == OXE.num_episodes
  for e, (a, b) in enumerate(zip(original, relabelled)):
    fa, fb = a.features.feature, b.features.feature
    assert set(fb) == set(fa) | {"steps/learned_reward"}
    for key in fa:  # cameras image_0 / image_1 included, byte-identical
      assert fa[key] == fb[key], key
    np.testing.assert_allclose(floats(b, "steps/learned_reward"),
                               predictions["reward"][predictions["episode"] == e],
                               rtol=1e-6, atol=1e-7)
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  builder = tfds.builder_from_directory(out)
  assert {"image_0", "image_1", "state"} <= set(builder.info.features["steps"]["observation"].keys())
  episode = next(iter(builder.as_dataset(split="train", shuffle_files=False).take(1)))
  step = next(iter(episode["steps"]))
  assert step["observation"]["image_0"].shape == (40, 40, 3)
  assert step["learned_reward"].dtype.name == "float32"
