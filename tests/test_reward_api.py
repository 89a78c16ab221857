"""rrd_jax.RewardModel: the same per-step rewards as predict for every input set (within 1e-5),
frames resized as in training, and one sentence for each kind of bad input."""

import numpy as np
import pytest

import rrd_jax
from rrd_jax.cli import train
from rrd_jax.infer import predict, reward_model
from rrd_jax.train import step as step_lib
from rrd_jax.util.errors import UserError
from tests.helpers import read_episodes, tiny_config

INPUT_SETS = {
    "pixel": {},
    "pixel+wrist": {"model.use_wrist": True},
    "pixel+instruction+frame_diff": {"model.use_instruction": True, "model.frame_diff": True},
    "mlp": {"model.kind": "mlp", "model.normalize_inputs": True},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(INPUT_SETS))
def test_reward_model_gives_predicts_rewards_for_every_input_set(name, tiny_dataset_dir, tmp_path):
  workdir = str(tmp_path / "w")
  # 36x36 from the stored 40x40 frames: the API resizes as the pipeline does
  config = tiny_config(tiny_dataset_dir, **{"data.image_size": 36, **INPUT_SETS[name]})
  train.train_and_evaluate(config, workdir, log=lambda *_: None)
  predictor = predict.RunPredictor(workdir, checkpoint_name="latest")
  ids = np.arange(len(predictor.index))
  predicted, _ = predictor.predict(ids)
  model = rrd_jax.RewardModel.load(workdir)
  assert model.step == predictor.step == 6
  episodes = read_episodes(tiny_dataset_dir)
  for i in ids:
    rewards = model.episode(episodes[predictor.index.file_paths[i]], batch_size=5)
    assert rewards.dtype == np.float32 and rewards.shape == predicted[i].shape
    np.testing.assert_allclose(rewards, predicted[i], rtol=1e-5, atol=1e-5)
  # one batch of steps from different episodes, through __call__
  steps = [episodes[predictor.index.file_paths[i]] for i in ids[:3]]
  observation = {k: np.stack([s["observation"][k][1] for s in steps]) for k in steps[0]["observation"]}
  following = {k: np.stack([s["observation"][k][2] for s in steps]) for k in steps[0]["observation"]}
  action = np.stack([s["action"][1] for s in steps])
  instruction = [s["language_instruction"][0] for s in steps]
  np.testing.assert_allclose(model(observation, action, following, instruction),
                             [predicted[i][1] for i in ids[:3]], rtol=1e-5, atol=1e-5)


def _model(**overrides):
  """A RewardModel of a fresh (untrained) state: enough for input handling."""
  config = tiny_config("", **{"data.image_size": 36, **overrides})
  vocabulary = ["<unknown>", "pick up the bowl", "open the drawer"]
  state = step_lib.create_train_state(config, len(vocabulary), 8, 7)
  facts = {"input_sizes": {"state": 8, "action": 7}, "instruction_vocabulary": vocabulary}
  return reward_model.RewardModel(state, config, facts, "latest")


def _batch(rng, batch=3, size=40):
  observation = {"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
                 "wrist_image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
                 "state": rng.normal(size=(batch, 8)).astype(np.float32),
                 "unused": np.zeros(batch)}
  return observation, rng.normal(size=(batch, 7)).astype(np.float32)


def test_inputs_describe_the_keys_sizes_and_dtypes():
  model = _model(**{"model.use_wrist": True, "model.use_instruction": True})
  inputs = model.inputs
  assert (inputs.image, inputs.wrist_image, inputs.state) == ("image", "wrist_image", "state")
  assert (inputs.image_size, inputs.state_size, inputs.action_size) == (36, 8, 7)
  assert inputs.instruction and not inputs.next_image
  text = str(inputs)
  assert "uint8 [B, H, W, 3]" in text and "float32 [B, 8]" in text and "36x36" in text
  mlp = _model(**{"model.kind": "mlp"}).inputs
  assert (mlp.image, mlp.wrist_image, mlp.image_size) == ("", "", 0)


def test_frames_of_any_size_are_resized_as_the_pipeline_does_and_unused_keys_ignored():
  from rrd_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  model = _model()
  rng = np.random.default_rng(0)
  observation, action = _batch(rng, size=50)
  inputs = model.prepare(observation, action, observation)
  assert inputs["image"].shape == (3, 36, 36, 3) and inputs["image"].dtype == np.uint8
  np.testing.assert_array_equal(inputs["image"],
                                pipeline.resize_frame(observation["image"], 36).numpy())
  same = {**observation, "image": inputs["image"]}
  np.testing.assert_array_equal(model.prepare(same, action, same)["image"], inputs["image"])
  # a frame already at the model's size is what the pipeline's resize returns, too
  np.testing.assert_array_equal(pipeline.resize_frame(inputs["image"], 36).numpy(), inputs["image"])
  rewards = model(observation, action, observation)
  assert rewards.shape == (3,) and rewards.dtype == np.float32
  np.testing.assert_allclose(model.apply(model.params, inputs), rewards, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def instructed_model():
  return _model(**{"model.use_instruction": True})


def test_instructions_map_to_the_training_vocabulary(instructed_model):
  model = instructed_model
  ids = model.instruction_ids(["open the drawer", b"pick up the bowl", "never seen"], 3)
  np.testing.assert_array_equal(ids, [2, 1, 0])


@pytest.mark.parametrize("change, words", [
    (lambda o, a, n: (o, a, {k: v for k, v in n.items() if k != "state"}, None),
     "next_observation has no 'state'"),
    (lambda o, a, n: ({k: v for k, v in o.items() if k != "image"}, a, n, None),
     "observation has no 'image'"),
    (lambda o, a, n: (o, a[:, :5], n, None), "action has 5 values per step; the model was trained with 7"),
    (lambda o, a, n: (o, a[0], n, None), "action must have 2 dimensions"),
    (lambda o, a, n: ({**o, "image": o["image"].astype(np.float32)}, a, n, None),
     "observation['image'] must be uint8 frames"),
    (lambda o, a, n: ({**o, "state": o["state"][:2]}, a, n, None),
     "observation['state'] has 2 rows but action has 3"),
    (lambda o, a, n: (o, a, n, None), "pass instruction="),
    (lambda o, a, n: (o, a, n, ["one"]), "instruction has 1 entries for a batch of 3"),
])
def test_bad_input_is_one_sentence_naming_it(change, words, instructed_model):
  model = instructed_model
  observation, action = _batch(np.random.default_rng(1))
  args = change(observation, action, dict(observation))
  if words != "pass instruction=" and args[3] is None:
    args = args[:3] + (["open the drawer"] * 3,)
  with pytest.raises(UserError, match=words.replace("[", r"\[").replace("(", r"\(")) as info:
    model(*args)
  assert "\n" not in str(info.value)


def test_unknown_checkpoint_and_missing_run_are_one_sentence(tmp_path):
  with pytest.raises(UserError, match="checkpoint must be latest, best or a step number"):
    rrd_jax.RewardModel.load(str(tmp_path), checkpoint="newest")
  with pytest.raises(UserError, match="must be the directory of a training run"):
    rrd_jax.RewardModel.load(str(tmp_path))
