"""rrd_jax/model/augment.py: the DrQ shift against a NumPy reference, its (seed, step) determinism,
o / o' alignment, the wrist camera's own draw, an independent shift per frame over the full range
[-pad, pad]^2, and where it applies (pixel training only)."""

import jax
import numpy as np
import pytest
from scipy import stats

from rrd_jax.model.augment import Augmentation, random_shift
from rrd_jax.model.losses import LossOptions
from rrd_jax.train import step as step_lib
from tests.helpers import tiny_config


def _reference_shift(image, offset, pad):
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
  size = image.shape[0]
  return padded[offset[0]: offset[0] + size, offset[1]: offset[1] + size]


def test_random_shift_matches_numpy_pad_and_crop():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 3, 12, 12, 3), dtype=np.uint8)
  offsets = rng.integers(0, 7, (2, 3, 2))
  shifted = np.asarray(random_shift(images, offsets, 3))
  assert shifted.shape == images.shape and shifted.dtype == np.uint8
  for b in range(2):
    for k in range(3):
      np.testing.assert_array_equal(shifted[b, k], _reference_shift(images[b, k], offsets[b, k], 3))
  centred = np.asarray(random_shift(images, np.full((2, 3, 2), 3), 3))
  np.testing.assert_array_equal(centred, images)  # offset (pad, pad) is the identity


def _batch(rng):
  image = rng.integers(0, 256, (4, 5, 16, 16, 3), dtype=np.uint8)
  return {"image": image, "next_image": image.copy(), "wrist_image": image.copy(),
          "state": rng.normal(size=(4, 5, 3)).astype(np.float32)}


def test_the_shift_is_a_function_of_seed_and_step_and_keeps_o_and_next_o_aligned():
  batch = _batch(np.random.default_rng(1))
  shift = Augmentation("shift", pad=2, seed=7)
  first, again = shift(batch, 3), shift(batch, 3)
  for name in ("image", "next_image", "wrist_image"):
    np.testing.assert_array_equal(first[name], again[name])
  np.testing.assert_array_equal(first["image"], first["next_image"])  # one offset for o and o'
  assert not np.array_equal(first["image"], first["wrist_image"])  # the wrist's own draw
  assert not np.array_equal(first["image"], shift(batch, 4)["image"])  # another step
  assert not np.array_equal(first["image"], Augmentation("shift", 2, seed=8)(batch, 3)["image"])
  assert not np.array_equal(first["image"], batch["image"])
  np.testing.assert_array_equal(first["state"], batch["state"])  # only frames move
  jitted = jax.jit(lambda b, s: shift(b, s))(batch, np.int32(3))
  np.testing.assert_array_equal(jitted["image"], first["image"])  # a traced step draws the same
  for off in (Augmentation("none", 2, 7), Augmentation("shift", 0, 7)):
    assert off(batch, 3) is batch


def _coordinate_frames(lead, size):
  """[*lead, size, size, 3] uint8 frames whose pixel (r, c) is (r, c, 0): a crop's offset can be
  read off any pixel it did not take from the padding."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  frame = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
  return np.broadcast_to(frame, tuple(lead) + frame.shape).copy()


def _recovered_shifts(frames, size, pad):
  """[..., 2] (row, column) shift in [-pad, pad] of each shifted coordinate frame, from its centre
  pixel; checks that the whole frame is that pad-and-crop (the NumPy reference)."""
  centre = size // 2
  shifts = frames[..., centre, centre, :2].astype(np.int64) - centre
  flat_frames, flat_shifts = frames.reshape((-1,) + frames.shape[-3:]), shifts.reshape((-1, 2))
  original = _coordinate_frames((), size)
  for frame, shift in zip(flat_frames, flat_shifts):
    np.testing.assert_array_equal(frame, _reference_shift(original, shift + pad, pad))
  return shifts


def test_every_frame_draws_its_own_shift_over_the_full_range():
  """16 subsequences x 64 frames of a coordinate image, pad 4: each frame's (row, column) shift
  is read back. The 1024 shifts are uniform over all 81 pairs in [-4, 4]^2 (every pair occurs,
  chi-square at 99.9%), so the full range -pad..pad is drawn on both axes, independently;
  frames of one subsequence draw independently (consecutive frames agree about 1/81 of the
  time, not always); o' moves with its o; the wrist frame's shift is its own draw."""
  pad, size, lead = 4, 24, (16, 64)
  frames = _coordinate_frames(lead, size)
  batch = {"image": frames, "next_image": frames.copy(), "wrist_image": frames.copy()}
  out = jax.device_get(Augmentation("shift", pad=pad, seed=11)(batch, 5))
  image = _recovered_shifts(out["image"], size, pad)
  np.testing.assert_array_equal(_recovered_shifts(out["next_image"], size, pad), image)
  wrist = _recovered_shifts(out["wrist_image"], size, pad)
  for shifts in (image, wrist):
    same_as_next = (shifts[:, 1:] == shifts[:, :-1]).all(-1)  # consecutive frames, one subsequence
    assert same_as_next.mean() < 0.05, same_as_next.mean()
    assert all(len({tuple(s) for s in sub}) > 32 for sub in shifts)  # 64 frames: ~44 distinct
    assert set(shifts[..., 0].ravel()) == set(range(-pad, pad + 1))
    assert set(shifts[..., 1].ravel()) == set(range(-pad, pad + 1))
    cells = (shifts[..., 0] + pad) * (2 * pad + 1) + shifts[..., 1] + pad
    counts = np.bincount(cells.ravel(), minlength=(2 * pad + 1) ** 2)
    assert counts.min() > 0, counts
    expected = counts.sum() / len(counts)
    assert np.sum((counts - expected) ** 2 / expected) < stats.chi2.ppf(0.999, len(counts) - 1)
  assert (image == wrist).all(-1).mean() < 0.05


@pytest.mark.parametrize("overrides, kind", [({}, "shift"), ({"model.augment": "none"}, "none"),
                                              ({"model.kind": "mlp"}, "none")])
def test_augmentation_is_on_by_default_for_pixel_models_only(overrides, kind):
  assert Augmentation.from_config(tiny_config("/data", **overrides)).kind == kind


def test_a_train_step_with_the_shift_differs_and_evaluation_never_shifts():
  config = tiny_config("/data", **{"model.hidden_sizes": (8,)})
  state = step_lib.create_train_state(config, 1, 3, 2)
  rng = np.random.default_rng(2)
  batch = {"image": rng.integers(0, 256, (2, 4, 40, 40, 3), dtype=np.uint8),
           "state": rng.normal(size=(2, 4, 3)).astype(np.float32),
           "next_state": rng.normal(size=(2, 4, 3)).astype(np.float32),
           "action": rng.normal(size=(2, 4, 2)).astype(np.float32),
           "episode_return": np.ones(2, np.float32), "episode_length": np.full(2, 9, np.int32)}
  keys = ("state", "next_state", "action", "image")
  options = LossOptions.from_config(config.rrd)
  update = lambda augmentation: jax.jit(  # noqa: E731  (jitted: one compile, not op-by-op)
      lambda s, b: step_lib.train_update(s, b, keys, options, augmentation=augmentation))
  plain = update(None)(state, batch)[1]["loss"]
  shifted = update(Augmentation.from_config(config))(state, batch)[1]["loss"]
  assert float(plain) != float(shifted)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
  evaluated = step_lib.make_eval_step(keys, options, mesh)(state, batch)["loss"]
  np.testing.assert_allclose(evaluated, plain, rtol=1e-6)
