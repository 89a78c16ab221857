"""The pieces both loops share: rrd_jax/run/lifecycle.py, the one checkpoint module, and a train state
created from shapes alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrd_jax.config import loading
from rrd_jax.config.inputs import ModelInputs
from rrd_jax.model import networks
from rrd_jax.run import checkpoint, lifecycle, parallel
from rrd_jax.train import step as step_lib
from rrd_jax.util.errors import UserError
from rrd_jax.util.progress import LineProgress


@pytest.mark.parametrize("before,after,every,expected", [
    (0, 1, 1, True), (4, 5, 5, True), (5, 6, 5, False), (3, 12, 5, True), (10, 14, 5, False),
    (0, 100, 0, False), (99, 100, 100, True), (100, 199, 100, False)])
def test_crossed(before, after, every, expected):
  assert lifecycle.crossed(before, after, every) is expected


def test_check_finite_names_the_metric_and_place():
  lifecycle.check_finite({"train/loss": 0.5, "other": float("nan")}, ["train/loss"], "step 3")
  with pytest.raises(UserError, match=r"training diverged: train/loss is nan at step 3"):
    lifecycle.check_finite({"train/loss": float("nan")}, ["train/loss"], "step 3")
  with pytest.raises(UserError, match=r"train/rrd_loss is inf at env step 7 \(member m\)"):
    lifecycle.check_finite({"train/rrd_loss": float("inf")}, ["train/critic_loss", "train/rrd_loss"],
                           "env step 7 (member m)")


def test_clock_leaves_out_excluded_time(monkeypatch):
  now = iter([100.0, 103.0, 110.0, 112.0, 120.0])  # reset, enter, exit, elapsed, reset
  monkeypatch.setattr(lifecycle.time, "perf_counter", lambda: next(now))
  clock = lifecycle.Clock()
  with clock.excluded():
    assert clock.excluded_s == 0.0  # counted when the excluded block ends
  assert clock.elapsed() == pytest.approx(12.0 - 7.0)
  clock.reset()
  assert clock.excluded_s == 0.0


def _tree(seed):
  rng = np.random.default_rng(seed)
  return {"a": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
          "b": {"c": jnp.asarray(rng.integers(0, 9, size=4), jnp.int32)}}


def test_line_progress_gives_rate_and_eta_from_its_first_call_on():
  now = [100.0]
  progress = LineProgress(1000, unit="env step", clock=lambda: now[0])
  assert progress.text(100) == "10%"  # the first interval holds compilation: no rate from it
  now[0] += 60.0  # 200 steps a minute from here on
  assert progress.text(300) == "30%, 3.33 env step/s, ETA 3m30s"
  now[0] += 7200.0
  assert progress.text(310) == "31%, 0.0289 env step/s, ETA 6h37m"
  assert LineProgress(10).text(0) == "0%"


def test_checkpointer_saves_named_pytrees_and_meta(tmp_path):
  checkpointer = checkpoint.Checkpointer(str(tmp_path), keep=2, keep_best=True)
  for step in (1, 2, 3):
    checkpointer.save(step, {"x": _tree(step), "y": _tree(10 + step)}, {"step": step})
  checkpointer.save(3, {"x": _tree(99), "y": _tree(99)}, {"step": -1})  # saved already: no-op
  checkpointer.save_best(2, {"x": _tree(2), "y": _tree(12)}, {"step": 2}, eval_loss=0.5)
  checkpointer.save_best(3, {"x": _tree(3), "y": _tree(13)}, {"step": 3}, eval_loss=0.9)
  checkpointer.save_best(3, {"x": _tree(3), "y": _tree(13)}, {"step": 3}, eval_loss=0.9)  # again
  like = {"x": _tree(0), "y": _tree(0)}
  items, meta = checkpointer.restore_latest(like)
  checkpointer.close()
  assert meta == {"step": 3}
  jax.tree.map(np.testing.assert_array_equal, items, {"x": _tree(3), "y": _tree(13)})
  assert checkpoint.available_steps(str(tmp_path)) == [2, 3]  # keep=2
  best, best_meta = checkpoint.restore(str(tmp_path), like, "best")
  assert best_meta == {"step": 2}  # the lowest eval/loss
  jax.tree.map(np.testing.assert_array_equal, best, {"x": _tree(2), "y": _tree(12)})
  with pytest.raises(UserError, match="no checkpoint for step 1"):
    checkpoint.restore(str(tmp_path), like, "1")
  assert checkpoint.restore(str(tmp_path / "none"), like) is None


@pytest.mark.parametrize("overrides", [{}, {"model.kind": "mlp"},
                                       {"model.frame_diff": True, "model.use_wrist": True,
                                        "model.use_instruction": True}])
def test_train_state_from_shapes_alone(overrides):
  """No data batch: the params are those model.init gives on a batch of real arrays."""
  config = loading.load_config(overrides={"data.image_size": 40, **overrides})
  mesh = parallel.make_mesh()
  state = step_lib.create_train_state(config, 3, 8, 7, rng=jax.random.PRNGKey(5),
                                      sharding=parallel.replicated(mesh))
  inputs = ModelInputs.from_config(config)
  rng = np.random.default_rng(0)
  batch = {"state": rng.normal(size=(6, 8)), "next_state": rng.normal(size=(6, 8)),
           "action": rng.normal(size=(6, 7)),
           "image": rng.integers(0, 255, (6, 40, 40, 3), np.uint8),
           "next_image": rng.integers(0, 255, (6, 40, 40, 3), np.uint8),
           "wrist_image": rng.integers(0, 255, (6, 40, 40, 3), np.uint8),
           "instruction_id": rng.integers(0, 3, 6).astype(np.int32)}
  batch = {k: batch[k] for k in inputs.keys}
  model = networks.build_model(config.model, num_instructions=3)
  expected = jax.jit(model.init)(jax.random.PRNGKey(5), batch)
  jax.tree.map(np.testing.assert_array_equal, state.params, expected)
  assert state.apply_fn(state.params, batch).shape == (6,)
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_fully_replicated
  assert int(state.step) == 0
