"""Frame caches (rrd_jax/data/cache.py): the host cache gives the streaming path's batches exactly;
the device cache draws with the same law from the same frames, inside jit."""

import numpy as np
import pytest

from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import cache, pipeline, rlds, source
from rrd_jax.data.pipeline import EpisodeLoader
from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.run import parallel

KEYS = rlds.FeatureKeys()


@pytest.fixture(scope="module")
def loader(tiny_dataset_dir):
  builder = rlds.open_builder(tiny_dataset_dir)
  index = rlds.build_index(builder, KEYS)
  vocab = source.instruction_vocabulary(index.instructions)
  return EpisodeLoader(builder, index, KEYS, ModelInputs(image=True, next_image=True, wrist_image=True,
                                                    image_size=40), instruction_vocab=vocab)


@pytest.fixture(scope="module")
def table(loader):
  return cache.build_table(loader, np.arange(len(loader.index)), progress=False)


def _stream(loader, ids, options, n):
  return list(pipeline.train_dataset(loader, ids, options, num_steps=n).as_numpy_iterator())


def test_table_holds_every_frame(loader, table):
  index = loader.index
  assert len(table.frames["image"]) == index.lengths.sum()
  np.testing.assert_array_equal(table.length, index.lengths)
  np.testing.assert_array_equal(table.start[1:], np.cumsum(index.lengths)[:-1])
  assert cache.table_bytes(loader, np.arange(len(index))) >= table.frames["image"].nbytes


@pytest.mark.parametrize("negatives_ratio", [0.0, 0.5])
def test_host_cache_batches_equal_streaming(loader, table, negatives_ratio):
  ids = np.arange(len(loader.index))
  options = SamplerOptions(episodes_per_batch=4, sample_size=5, seed=2,
                           negatives_ratio=negatives_ratio, negative_return=-1.0)
  streamed = _stream(loader, ids, options, 4)
  host = cache.HostCache(table, loader.inputs, options, component_ids=loader.component_ids)
  for step, expected in enumerate(streamed):
    got = host.batch(step)
    assert set(got) == set(expected)
    for key in expected:
      np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, err_msg=key)


def _device_batches(loader, table, options, steps, keys=None):
  """`steps` device-cache batches on the host; only `keys` of them when given (no image gathers)."""
  import jax  # pylint: disable=import-outside-toplevel
  del table  # the device cache decodes its own shard(s)
  mesh = parallel.make_mesh(1)
  plan = cache.shard_plan(loader, np.arange(len(loader.index)), options, loader.component_ids, 1)
  device = cache.DeviceCache(loader, np.arange(len(loader.index)), plan, options, mesh,
                             progress=False)
  sample = jax.jit(lambda *args: {k: v for k, v in device.sample(*args).items()
                                  if keys is None or k in keys})
  return [jax.device_get(sample(device.table, device.probabilities, s)) for s in range(steps)]


def _chi2_quantile_999(df):
  """The 99.9% quantile of chi-square(df) (Wilson-Hilferty; within 1% for df >= 10)."""
  h = 2.0 / (9.0 * df)
  return df * (1.0 - h + 3.0902 * np.sqrt(h)) ** 3


def test_device_cache_content_matches_the_episodes(loader, table):
  """Every sampled (episode, step) carries exactly that step's frames and values."""
  batches = _device_batches(loader, table, SamplerOptions(4, 5, seed=0), 3)
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
  batches = _device_batches(loader, table, SamplerOptions(256, k, seed=1), 50,
                            keys=("episode_id", "step"))  # 12800 episode draws
  episodes = np.concatenate([b["episode_id"] for b in batches])
  steps = np.concatenate([b["step"] for b in batches])
  expected = lengths / lengths.sum()
  observed = np.bincount(episodes, minlength=len(lengths)) / len(episodes)
  np.testing.assert_allclose(observed, expected, atol=0.015)
  for e, row in zip(episodes, steps):
    assert np.all(row < lengths[e]) and np.all(np.diff(row) >= 0)
    if k <= lengths[e]:
      assert len(set(row.tolist())) == k
  # Marginal of a step index within an episode: each of the n draws of an episode of T >= K
  # steps holds step t with probability K/T, independently across draws, so its count is
  # Binomial(n, K/T). Per step: |z| < 4.5 (~150 cells: a false alarm ~1e-3); per episode the
  # counts sum to nK, so (T-1)/T sum_t z_t^2 ~ chi2(T-1), pooled over episodes below the 99.9%
  # quantile. Measured (seed 1): max |z| = 2.4, chi2 = 114 on 146 df (quantile 204.5); for the most
  # drawn episode (n = 1039) the worst step frequency is off 1/T by 0.0055, binomial SE 0.0026,
  # where the old check allowed 0.04.
  chi2, df = 0.0, 0
  for e, length in enumerate(lengths):
    n, p = int(np.sum(episodes == e)), k / length
    assert n > 200, (e, n)
    counts = np.bincount(steps[episodes == e].ravel(), minlength=length)
    if length == k:  # every step, every time
      np.testing.assert_array_equal(counts, n)
      continue
    z = (counts - n * p) / np.sqrt(n * p * (1 - p))
    assert np.abs(z).max() < 4.5, (e, counts, n * p)
    chi2, df = chi2 + (length - 1) / length * np.sum(z ** 2), df + length - 1
  assert chi2 < _chi2_quantile_999(df), (chi2, df)
  # K > T: with replacement
  long_k = int(lengths.max()) + 3
  batch = _device_batches(loader, table, SamplerOptions(8, long_k, seed=0), 1)[0]
  assert batch["step"].shape == (8, long_k)
  assert all(len(set(r.tolist())) < long_k for r in batch["step"])


def test_device_cache_negatives(loader, table):
  options = SamplerOptions(64, 3, seed=0, negatives_ratio=0.3, negative_return=-2.0)
  batches = _device_batches(loader, table, options, 10)
  negative = np.concatenate([b["negative"] for b in batches])
  assert negative.mean() == pytest.approx(0.3, abs=0.05)
  for b in batches:
    own = loader.instruction_ids[b["episode_id"]]
    neg = b["negative"]
    assert np.all(b["instruction_id"][neg, 0] != own[neg])
    np.testing.assert_array_equal(b["instruction_id"][~neg, 0], own[~neg])
    np.testing.assert_allclose(b["episode_return"][neg], -2.0)
