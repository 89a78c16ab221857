"""Frame caches (rrd_jax/data/cache.py): the host cache gives the streaming path's batches exactly;
the device cache draws with the same law from the same frames, inside jit."""

import numpy as np
import pytest

from rrd_jax.data import cache, pipeline, rlds, source
from rrd_jax.data.pipeline import EpisodeLoader, Inputs

KEYS = rlds.FeatureKeys()


@pytest.fixture(scope="module")
def loader(tiny_dataset_dir):
  builder = rlds.open_builder(tiny_dataset_dir)
  index = rlds.build_index(builder, KEYS)
  vocab = source.instruction_vocabulary(index.instructions)
  return EpisodeLoader(builder, index, KEYS, Inputs(image=True, next_image=True, wrist_image=True,
                                                    image_size=40), instruction_vocab=vocab)


@pytest.fixture(scope="module")
def table(loader):
  return cache.build_table(loader, np.arange(len(loader.index)), progress=False)


def _stream(loader, ids, sampler_kwargs, n, **kwargs):
  return list(pipeline.train_dataset(loader, ids, sampler_kwargs=sampler_kwargs, num_steps=n,
                                     **kwargs).as_numpy_iterator())


def test_table_holds_every_frame(loader, table):
  index = loader.index
  assert len(table.frames["image"]) == index.lengths.sum()
  np.testing.assert_array_equal(table.length, index.lengths)
  np.testing.assert_array_equal(table.start[1:], np.cumsum(index.lengths)[:-1])
  assert cache.table_bytes(loader, np.arange(len(index))) >= table.frames["image"].nbytes


@pytest.mark.parametrize("negatives_ratio", [0.0, 0.5])
def test_host_cache_batches_equal_streaming(loader, table, negatives_ratio):
  ids = np.arange(len(loader.index))
  kwargs = dict(episodes_per_batch=4, sample_size=5, seed=2, negatives_ratio=negatives_ratio)
  streamed = _stream(loader, ids, kwargs, 4, negative_return=-1.0)
  host = cache.HostCache(table, loader.inputs, sampler_kwargs=kwargs,
                         component_ids=loader.component_ids, negative_return=-1.0)
  for step, expected in enumerate(streamed):
    got = host.batch(step)
    assert set(got) == set(expected)
    for key in expected:
      np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, err_msg=key)


def _device_batches(loader, table, kwargs, steps, negative_return=0.0):
  import jax  # pylint: disable=import-outside-toplevel
  device = cache.DeviceCache(table, loader.inputs, sampler_kwargs=kwargs,
                             component_ids=loader.component_ids, negative_return=negative_return)
  sample = jax.jit(device.sample)
  return [jax.device_get(sample(device.table, device.probabilities, s)) for s in range(steps)]


def test_device_cache_content_matches_the_episodes(loader, table):
  """Every sampled (episode, step) carries exactly that step's frames and values."""
  kwargs = dict(episodes_per_batch=4, sample_size=5, seed=0)
  batches = _device_batches(loader, table, kwargs, 3)
  for batch in batches:
    for row, episode_id in enumerate(batch["episode_id"]):
      steps = batch["step"][row]
      ref = {k: np.asarray(v) for k, v in loader.load(np.int64(episode_id), steps).items()}
      for key in ("image", "next_image", "wrist_image", "state", "next_state", "action",
                  "true_reward"):
        np.testing.assert_allclose(batch[key][row], ref[key], rtol=1e-6, err_msg=key)
      assert batch["episode_length"][row] == loader.index.lengths[episode_id]
      assert batch["episode_return"][row] == pytest.approx(loader.index.returns[episode_id])


def test_device_cache_sampling_law(loader, table):
  """Episodes i.i.d. proportional to length; K distinct, uniform indices when K <= T; with
  replacement when K > T (the streaming sampler's law, tests/test_sampling.py)."""
  lengths = loader.index.lengths
  k = 6
  kwargs = dict(episodes_per_batch=64, sample_size=k, seed=1)
  batches = _device_batches(loader, table, kwargs, 40)
  episodes = np.concatenate([b["episode_id"] for b in batches])
  steps = np.concatenate([b["step"] for b in batches])
  expected = lengths / lengths.sum()
  observed = np.bincount(episodes, minlength=len(lengths)) / len(episodes)
  np.testing.assert_allclose(observed, expected, atol=0.015)
  for e, row in zip(episodes, steps):
    assert np.all(row < lengths[e]) and np.all(np.diff(row) >= 0)
    if k <= lengths[e]:
      assert len(set(row.tolist())) == k
  # marginal of a step index within one episode: uniform over its T steps
  e0 = int(np.argmax(np.bincount(episodes)))
  counts = np.bincount(steps[episodes == e0].ravel(), minlength=lengths[e0])
  np.testing.assert_allclose(counts / counts.sum(), 1 / lengths[e0], atol=0.04)
  # K > T: with replacement
  long_k = int(lengths.max()) + 3
  batch = _device_batches(loader, table, dict(episodes_per_batch=8, sample_size=long_k, seed=0), 1)[0]
  assert batch["step"].shape == (8, long_k)
  assert all(len(set(r.tolist())) < long_k for r in batch["step"])


def test_device_cache_negatives(loader, table):
  kwargs = dict(episodes_per_batch=64, sample_size=3, seed=0, negatives_ratio=0.3)
  batches = _device_batches(loader, table, kwargs, 10, negative_return=-2.0)
  negative = np.concatenate([b["negative"] for b in batches])
  assert negative.mean() == pytest.approx(0.3, abs=0.05)
  for b in batches:
    own = loader.instruction_ids[b["episode_id"]]
    neg = b["negative"]
    assert np.all(b["instruction_id"][neg, 0] != own[neg])
    np.testing.assert_array_equal(b["instruction_id"][~neg, 0], own[~neg])
    np.testing.assert_allclose(b["episode_return"][neg], -2.0)
