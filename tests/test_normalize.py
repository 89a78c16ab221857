"""Input normalisation (model.normalize_inputs) and the learning-rate schedule (optim.schedule):
the index's statistics against NumPy over every step, the model standardising by them exactly,
the statistics never trained, saved in the checkpoint and restored by predict."""

import dataclasses

import jax
import numpy as np
import pytest

from rrd_jax.cli import train
from rrd_jax.data import rlds
from rrd_jax.model import networks
from rrd_jax.model.losses import LossOptions
from rrd_jax.run import parallel
from rrd_jax.train import prepare
from rrd_jax.train import step as step_lib
from tests.helpers import read_episodes, tiny_config

STATS_NAMES = [f"{n}_{m}" for n in rlds.INPUT_FEATURES for m in ("mean", "std")]


def test_input_statistics_match_numpy_over_every_step_of_the_chosen_episodes(tiny_dataset_dir):
  index = rlds.build_index(rlds.open_builder(tiny_dataset_dir), rlds.FeatureKeys())
  ids = np.arange(0, len(index), 3)
  stats = rlds.input_statistics(index, ids)
  episodes = read_episodes(tiny_dataset_dir)
  chosen = [(e["observation"]["state"].astype(np.float64), e["action"].astype(np.float64))
            for e in (episodes[index.file_paths[i]] for i in ids)]
  state = np.concatenate([s for s, _ in chosen])
  action = np.concatenate([a for _, a in chosen])
  # s - s' with s' = s at the last step (the pipeline's next_state)
  delta = np.concatenate([s - np.concatenate([s[1:], s[-1:]]) for s, _ in chosen])
  for name, x in (("state", state), ("action", action), ("delta", delta)):
    std = x.std(0)
    np.testing.assert_allclose(stats[f"{name}_mean"], x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[f"{name}_std"], np.where(std < 1e-6, 1.0, std), rtol=1e-4,
                               atol=1e-6)
    assert stats[f"{name}_mean"].dtype == np.float32
  assert (stats["state_std"] > 0).all()


def test_a_dimension_that_never_varies_keeps_std_one():
  index = rlds.EpisodeIndex("d", [], np.zeros(2, np.int32), np.zeros(2), np.array([2, 3]),
                            np.zeros(2), ["a", "b"], ["", ""], ["train"] * 2, moments={
                                **{k: np.zeros((2, 1)) for k in rlds.MOMENT_KEYS},
                                "state_sum": np.array([[4.0], [6.0]]),
                                "state_sumsq": np.array([[8.0], [12.0]])})  # every state is 2
  stats = rlds.input_statistics(index, [0, 1])
  assert stats["state_mean"] == pytest.approx([2.0]) and stats["state_std"] == pytest.approx([1.0])


def _config(**overrides):
  return tiny_config("", **{"model.kind": "mlp", "model.normalize_inputs": True, **overrides})


def _stats(rng, state_size=3, action_size=2):
  sizes = {"state": state_size, "action": action_size, "delta": state_size}
  return {f"{n}_{m}": (rng.uniform(0.5, 2.0, d) if m == "std" else rng.normal(size=d))
          .astype(np.float32) for n, d in sizes.items() for m in ("mean", "std")}


def _batch(rng, b=2, k=4):
  return {"state": rng.normal(size=(b, k, 3)).astype(np.float32),
          "next_state": rng.normal(size=(b, k, 3)).astype(np.float32),
          "action": rng.normal(size=(b, k, 2)).astype(np.float32),
          "episode_return": np.ones(b, np.float32), "episode_length": np.full(b, k, np.int32),
          "true_reward": np.zeros((b, k), np.float32)}


def test_the_model_standardises_s_a_and_s_minus_s_prime_by_the_statistics():
  rng = np.random.default_rng(0)
  stats = _stats(rng)
  state = step_lib.create_train_state(_config(), 1, 3, 2, input_stats=stats)
  batch = {k: v[0] for k, v in _batch(rng).items() if k in ("state", "next_state", "action")}
  # The net's MLP (hidden sizes (32, 32)) applied by hand to the standardised features.
  z = lambda x, name: (x - stats[f"{name}_mean"]) / stats[f"{name}_std"]
  features = np.concatenate([z(batch["state"], "state"), z(batch["action"], "action"),
                             z(batch["state"] - batch["next_state"], "delta")], -1)
  params = state.params["params"]
  hidden = features
  for layer in ("Dense_0", "Dense_1"):
    hidden = np.maximum(hidden @ params[layer]["kernel"] + params[layer]["bias"], 0.0)
  expected = (hidden @ params["Dense_2"]["kernel"] + params["Dense_2"]["bias"])[:, 0]
  np.testing.assert_allclose(state.apply_fn(state.params, batch), expected, rtol=1e-5, atol=1e-5)


def test_training_never_changes_the_statistics_even_with_weight_decay():
  rng = np.random.default_rng(1)
  stats = _stats(rng)
  config = _config(**{"optim.weight_decay": 0.5, "optim.grad_clip_norm": 1.0})
  state = step_lib.create_train_state(config, 1, 3, 2, input_stats=stats)
  before = jax.device_get(state.params)
  train_step = step_lib.make_train_step(("state", "next_state", "action"),
                                        LossOptions.from_config(config.rrd), parallel.make_mesh(-1))
  for _ in range(3):
    state, metrics = train_step(state, _batch(rng))
  after = jax.device_get(state.params)
  for name in STATS_NAMES:
    np.testing.assert_array_equal(after[networks.INPUT_STATS][name], stats[name])
  assert not np.allclose(after["params"]["Dense_0"]["kernel"], before["params"]["Dense_0"]["kernel"])
  assert np.isfinite(metrics["loss"])


def test_cosine_schedule_warms_up_then_decays_to_zero_at_num_steps():
  optim = step_lib.OptimOptions(learning_rate=1e-3, grad_clip_norm=0.0, weight_decay=0.0,
                                schedule="cosine", warmup_steps=10)
  rate = step_lib.learning_rate(optim, 110)
  assert float(rate(0)) == 0.0
  assert float(rate(5)) == pytest.approx(5e-4)
  assert float(rate(10)) == pytest.approx(1e-3)
  assert float(rate(60)) == pytest.approx(5e-4, rel=1e-5)  # half way through the cosine
  assert float(rate(110)) == pytest.approx(0.0, abs=1e-12)
  assert step_lib.learning_rate(dataclasses.replace(optim, schedule="constant"), 110) == 1e-3


@pytest.mark.slow
def test_the_statistics_are_saved_in_the_checkpoint_and_restored_for_predict(tiny_dataset_dir,
                                                                             tmp_path):
  workdir = str(tmp_path / "w")
  config = tiny_config(tiny_dataset_dir, **{"model.kind": "mlp", "model.normalize_inputs": True})
  train.train_and_evaluate(config, workdir, log=lambda *_: None)
  data = prepare.open_training_data(config, log=lambda *_: None)
  expected = rlds.input_statistics(data.index, data.train_ids)
  restored, _ = prepare.restore_run_state(workdir)
  for name in STATS_NAMES:
    np.testing.assert_array_equal(restored.params[networks.INPUT_STATS][name], expected[name])
  assert not np.allclose(expected["state_mean"], 0.0)  # not the initial (identity) statistics
  # predict's model holds them too, and they matter: the same weights with identity statistics
  # give other rewards
  from rrd_jax.infer import predict  # pylint: disable=import-outside-toplevel
  predictor = predict.RunPredictor(workdir)
  np.testing.assert_array_equal(predictor.model.params[networks.INPUT_STATS]["delta_std"],
                                expected["delta_std"])
  rng = np.random.default_rng(2)
  state_size, action_size = expected["state_mean"].shape[0], expected["action_mean"].shape[0]
  batch = {"state": rng.normal(size=(5, state_size)), "next_state": rng.normal(size=(5, state_size)),
           "action": rng.normal(size=(5, action_size))}
  identity = {name: (np.ones_like if name.endswith("std") else np.zeros_like)(expected[name])
              for name in STATS_NAMES}
  with_identity = {**restored.params, networks.INPUT_STATS: identity}
  assert not np.allclose(predictor.model.apply(predictor.model.params, batch),
                         restored.apply_fn(with_identity, batch), atol=1e-3)


def test_block_in_state_puts_where_the_touch_reward_is_earned_into_the_state():
  """The touch task's block is only in the image; with block_in_state the state's last two dims
  hold it, and the reward is then a function of the state alone (the mlp benchmark's data)."""
  from rrd_jax.data import embedded, scenes  # pylint: disable=import-outside-toplevel
  plain = embedded.EmbeddedParams(num_episodes=4, min_length=20, max_length=30, image_size=16)
  with_block = embedded.EmbeddedParams(num_episodes=4, min_length=20, max_length=30,
                                       image_size=16, block_in_state=True)
  assert with_block.key() != plain.key()
  assert plain.key() == embedded.EmbeddedParams(num_episodes=4, min_length=20, max_length=30,
                                                image_size=16).key()
  touched = 0
  for i in range(4):
    a = embedded.generate_episode(plain, i)["steps"]
    b = embedded.generate_episode(with_block, i)["steps"]
    state = b["observation"]["state"]
    assert state.shape == (len(a["reward"]), 10)
    np.testing.assert_array_equal(state[:, :8], a["observation"]["state"])  # same episode
    assert (state[:, 8:] == state[:1, 8:]).all()  # the block does not move
    distance = np.linalg.norm(state[:, :2] - state[:, 8:], axis=-1)
    np.testing.assert_array_equal(b["reward"], (distance < scenes.TOUCH_RADIUS).astype(np.float32))
    touched += int(b["reward"].sum() > 0)
  assert touched >= 1
