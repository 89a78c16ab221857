"""data.cache=device split over the devices of the data mesh (rrd_jax/data/shards.py): disjoint
frame-balanced shards, the documented sampling law on 8 fake CPU devices, per-device batches from
the device's own shard, bitwise resume, 2 processes = 1 process x 2 devices, and a shard that
cannot fit refused before anything is decoded."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from scipy import stats

from rrd_jax.cli import train
from rrd_jax.data import shards
from rrd_jax.data.sampling import episode_probabilities
from rrd_jax.train import prepare
from tests.helpers import ROOT, tiny_config
from tests.test_multiprocess import FLAGS, free_port, rows


def test_shards_are_disjoint_cover_every_episode_and_balance_frames():
  rng = np.random.default_rng(0)
  for count, num_shards in ((379, 8), (379, 3), (1000, 16), (50, 8)):
    lengths = rng.integers(60, 500, size=count)  # LIBERO-10 demos: ~100-500 steps
    members = shards.assign(lengths, num_shards)
    joined = np.concatenate(members)
    assert len(joined) == count and set(joined.tolist()) == set(range(count))
    assert all(np.all(np.diff(m) > 0) for m in members)
    frames = np.asarray([lengths[m].sum() for m in members])
    assert frames.max() <= 1.1 * frames.min(), (count, num_shards, frames)
  # The assignment depends only on the lengths and the shard count.
  np.testing.assert_array_equal(np.concatenate(shards.assign(lengths, 8)),
                                np.concatenate(shards.assign(lengths.copy(), 8)))


def test_plan_probabilities_and_marginals():
  """NumPy reference of the law in rrd_jax/data/shards.py: p_d = p / P_d within a shard,
  q = p / (D P_d) overall; one shard is the one-table law unchanged."""
  lengths = np.asarray([5, 9, 3, 7, 2, 8, 6])
  p = episode_probabilities(lengths, "length")
  plan = shards.ShardPlan.build(lengths, p, 3)
  q = plan.marginals()
  assert q.sum() == pytest.approx(1.0)
  for d, members in enumerate(plan.members):
    within = plan.shard_probabilities(d)
    np.testing.assert_allclose(within[:len(members)], p[members] / p[members].sum(), rtol=1e-6)
    assert np.all(within[len(members):] == 0) and len(within) == plan.max_episodes
    np.testing.assert_allclose(q[members], p[members] / (3 * p[members].sum()))
  assert plan.law_deviation() == pytest.approx(np.max(np.abs(q / p - 1)))
  single = shards.ShardPlan.build(lengths, p, 1)
  np.testing.assert_array_equal(single.shard_probabilities(0), p.astype(np.float32))
  assert single.law_deviation() == pytest.approx(0.0, abs=1e-12)


EIGHT_DEVICES = textwrap.dedent("""
    import json
    import jax
    import numpy as np
    from rrd_jax.config.inputs import ModelInputs
    from rrd_jax.data import cache, rlds, source
    from rrd_jax.data.pipeline import EpisodeLoader
    from rrd_jax.data.sampling import SamplerOptions
    from rrd_jax.run import parallel
    keys = rlds.FeatureKeys()
    builder = rlds.open_builder({dataset!r})
    index = rlds.build_index(builder, keys)
    loader = EpisodeLoader(builder, index, keys, ModelInputs(image=True, next_image=True,
                           image_size=40), instruction_vocab=source.instruction_vocabulary(
                           index.instructions))
    ids = np.arange(len(index))
    options = SamplerOptions(episodes_per_batch=64, sample_size=3, seed=0)
    mesh = parallel.make_mesh()
    plan = cache.shard_plan(loader, ids, options, loader.component_ids, mesh.devices.size)
    device = cache.DeviceCache(loader, ids, plan, options, mesh, progress=False)
    sample = jax.jit(lambda t, p, s: device.sample(t, p, s))
    episodes, own_shard, content_ok = [], True, True
    for step in range(100):
      batch = jax.device_get(sample(device.table, device.probabilities, step))
      e = batch["episode_id"]
      episodes.append(e)
      for d in range(8):  # rows [8d, 8d + 8) come from device d's shard
        own_shard &= bool(np.isin(e[8 * d:8 * d + 8], plan.members[d]).all())
      if step < 2:
        for row in range(0, 64, 9):
          ref = loader.load(np.int64(e[row]), batch["step"][row])
          for k in ("image", "next_image", "state", "next_state", "action", "true_reward"):
            content_ok &= bool(np.allclose(batch[k][row], np.asarray(ref[k]), rtol=1e-6))
    print(json.dumps({{"devices": jax.device_count(), "episodes": np.concatenate(episodes).tolist(),
                      "members": [m.tolist() for m in plan.members], "marginals":
                      plan.marginals().tolist(), "own_shard": own_shard, "content_ok": content_ok,
                      "rows_per_device": [s.data.shape[0] for s in
                                          device.table.frames["image"].addressable_shards],
                      "max_frames": plan.max_frames}}))
""")


def _subprocess(script, devices, timeout=600):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_eight_devices_sample_their_own_shards_by_the_documented_law(tiny_dataset_dir):
  report = _subprocess(EIGHT_DEVICES.format(dataset=tiny_dataset_dir), 8)
  assert report["devices"] == 8
  # Each device holds only its own (padded) shard, and its batch rows come from it.
  assert report["rows_per_device"] == [report["max_frames"]] * 8
  assert report["own_shard"] and report["content_ok"]
  # Per-episode frequency over 6,400 draws vs q = p / (D P_d): chi-square with N - D degrees of
  # freedom (each device's draw count is fixed), below its 99.9% quantile.
  episodes = np.asarray(report["episodes"])
  q = np.asarray(report["marginals"])
  observed = np.bincount(episodes, minlength=len(q))
  expected = q * len(episodes)
  chi2 = float(np.sum((observed - expected) ** 2 / expected))
  df = len(q) - 8
  assert chi2 < stats.chi2.ppf(0.999, df), (chi2, df, observed, expected)


@pytest.mark.slow
def test_device_cache_resume_is_bitwise(tiny_dataset_dir, tmp_path):
  overrides = {"data.cache": "device", "train.num_steps": 6, "checkpoint.every_steps": 3,
               "train.log_every_steps": 1}
  whole = str(tmp_path / "whole")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **overrides), whole, log=lambda *_: None)
  halves = str(tmp_path / "halves")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **{**overrides, "train.num_steps": 3}),
                           halves, log=lambda *_: None)
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **overrides), halves, log=lambda *_: None)
  a, b = prepare.restore_run_state(whole)[0], prepare.restore_run_state(halves)[0]
  assert int(a.step) == int(b.step) == 6
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  with open(os.path.join(whole, "data_stats.json"), encoding="utf-8") as f:
    data_stats = json.load(f)
  assert data_stats["cache"] == "device" and data_stats["devices"] == 1
  train_episodes = len(prepare.open_training_data(
      tiny_config(tiny_dataset_dir, **overrides), log=lambda *_: None).train_ids)
  assert data_stats["processes"] == 1 and data_stats["episodes_per_device"] == [train_episodes]
  assert data_stats["frames_per_device"][0] > 0 and data_stats["bytes_per_device"][0] > 0


ONE_PROCESS_TWO_DEVICES = textwrap.dedent("""
    import jax
    from tests.helpers import tiny_config
    from rrd_jax.cli import train
    config = tiny_config({dataset!r}, **{{"data.cache": "device", "train.num_steps": 6,
                                         "train.log_every_steps": 1, "eval.every_steps": 3,
                                         "checkpoint.every_steps": 2}})
    train.train_and_evaluate(config, {workdir!r}, log=lambda *_: None)
    print('{{"devices": %d}}' % jax.device_count())
""")


@pytest.mark.slow
def test_two_processes_with_the_device_cache_match_one_process_with_two_devices(
    tiny_dataset_dir, tmp_path):
  one = str(tmp_path / "one")
  assert _subprocess(ONE_PROCESS_TWO_DEVICES.format(dataset=tiny_dataset_dir, workdir=one),
                     2)["devices"] == 2
  two = str(tmp_path / "two")
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable, RRD_JAX_PORT=str(free_port()))
  env.pop("XLA_FLAGS", None)
  launcher = subprocess.Popen(
      ["bash", os.path.join(ROOT, "launch", "local.sh"), "2", "--", "--workdir", two,
       f"--config.data.dataset_dir={tiny_dataset_dir}", "--config.data.cache=device", *FLAGS],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      start_new_session=True)
  try:
    output = launcher.communicate(timeout=300)[0]
  except subprocess.TimeoutExpired:
    os.killpg(launcher.pid, signal.SIGKILL)
    raise AssertionError("the 2-process run did not finish in 300 s (a hang)") from None
  assert launcher.returncode == 0, output[-4000:]
  with open(os.path.join(two, "data_stats.json"), encoding="utf-8") as f:
    data_stats = json.load(f)
  assert data_stats["processes"] == 2 and data_stats["devices"] == 2
  with open(os.path.join(one, "data_stats.json"), encoding="utf-8") as f:
    one_stats = json.load(f)
  assert one_stats["processes"] == 1 and one_stats["devices"] == 2
  for key in ("episodes_per_device", "frames_per_device", "bytes_per_device"):
    assert data_stats[key] == one_stats[key] and len(data_stats[key]) == 2
  losses = lambda workdir: np.asarray([r["train/loss"] for r in rows(workdir) if "train/loss" in r])
  assert len(losses(one)) == 6
  np.testing.assert_allclose(losses(two), losses(one), rtol=1e-4, atol=1e-7)
