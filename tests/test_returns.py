"""Returns that carry signal (rrd_jax/data/returns.py and its uses): time-penalised returns,
instruction-relabelled negatives, dataset mixtures, and the ROC-AUC evaluation."""

import os

import numpy as np
import pytest

from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import embedded, pipeline, returns, rlds, source
from rrd_jax.data.sampling import episode_probabilities, RRDSampler, SamplerOptions
from rrd_jax.train import evaluation
from rrd_jax.util.errors import UserError
from tests.helpers import tiny_config

INSTRUCTED = embedded.EmbeddedParams(num_episodes=12, min_length=4, max_length=16, image_size=40,
                                     num_shards=2, task="instructed", success_rate=1.0)
ROLLOUTS = embedded.EmbeddedParams(num_episodes=9, min_length=4, max_length=16, image_size=40,
                                   num_shards=1, task="instructed", success_rate=0.3, seed=1)


@pytest.fixture(scope="module")
def demos_dir(tmp_path_factory):
  return embedded.build_embedded_dataset(str(tmp_path_factory.mktemp("demos")), INSTRUCTED)


@pytest.fixture(scope="module")
def rollouts_dir(tmp_path_factory):
  return embedded.build_embedded_dataset(str(tmp_path_factory.mktemp("rollouts")), ROLLOUTS)


# ---------------------------------------------------------------------------------------------
# Return definitions
# ---------------------------------------------------------------------------------------------
def test_time_penalty_targets():
  raw, lengths = np.array([1.0, 1.0, 0.0, 3.0]), np.array([10, 40, 25, 4])
  offsets = np.full(4, returns.reward_offset("time_penalty", 0.01), np.float32)
  targets = returns.episode_targets(raw, lengths, offsets)
  np.testing.assert_allclose(targets.returns, raw - 0.01 * lengths, rtol=1e-6)
  np.testing.assert_array_equal(targets.success, [True, True, False, True])
  # faster successful demos get the higher return
  assert targets.returns[0] > targets.returns[1]
  plain = returns.episode_targets(raw, lengths, np.full(4, returns.reward_offset("sum", 0.5)))
  np.testing.assert_array_equal(plain.returns, raw)
  with pytest.raises(ValueError):
    returns.reward_offset("bogus", 0.0)


def test_mismatched_instructions_never_own_and_uniform():
  rng = np.random.default_rng(0)
  candidates = np.array([1, 2, 3, 5])
  own = np.repeat(candidates, 4000)
  other = returns.mismatched_instructions(rng, own, candidates)
  assert not np.any(other == own)
  assert set(other.tolist()) <= set(candidates.tolist())
  for c in candidates:  # each of the 3 others with probability 1/3
    counts = np.bincount(other[own == c], minlength=6)[candidates[candidates != c]]
    np.testing.assert_allclose(counts / 4000, 1 / 3, atol=0.03)
  # an instruction outside the candidates (e.g. unknown id 0) may get any candidate
  outside = returns.mismatched_instructions(rng, np.zeros(4000, int), candidates)
  np.testing.assert_allclose(np.bincount(outside, minlength=6)[candidates] / 4000, 0.25, atol=0.03)


# ---------------------------------------------------------------------------------------------
# Sampler: negatives and mixtures
# ---------------------------------------------------------------------------------------------
def test_negatives_leave_the_plan_unchanged_and_hit_the_ratio():
  lengths = np.array([5, 9, 12, 30, 7, 8])
  instructions = np.array([1, 1, 2, 2, 3, 3])
  options = SamplerOptions(episodes_per_batch=16, sample_size=4, seed=3)
  plain = RRDSampler(lengths, options)
  relabel = RRDSampler(lengths, options.replace(negatives_ratio=0.25), instruction_ids=instructions)
  negatives = 0
  for step in range(300):
    a, b = plain.plan(step), relabel.plan(step)
    np.testing.assert_array_equal(a.episode_ids, b.episode_ids)
    np.testing.assert_array_equal(a.sample_indices, b.sample_indices)
    own = instructions[b.episode_ids]
    np.testing.assert_array_equal(b.instruction_ids[~b.negative], own[~b.negative])
    assert np.all(b.instruction_ids[b.negative] != own[b.negative])
    negatives += b.negative.sum()
  assert negatives / (300 * 16) == pytest.approx(0.25, abs=0.02)
  assert plain.plan(0).negative is None
  with pytest.raises(ValueError):
    RRDSampler(lengths, options.replace(negatives_ratio=0.5), instruction_ids=np.ones(6, int))


def _reference_mixture_probabilities(lengths, components, weights, weighting):
  """P(episode) = w_c / sum(w) * (T_i / sum of T in c, or 1 / |c|): written from the definition."""
  p = np.zeros(len(lengths))
  total = sum(weights)
  for c, w in enumerate(weights):
    members = [i for i in range(len(lengths)) if components[i] == c]
    for i in members:
      within = lengths[i] / sum(lengths[j] for j in members) if weighting == "length" else 1 / len(members)
      p[i] = w / total * within
  return p


@pytest.mark.parametrize("weighting", ["length", "uniform"])
def test_mixture_probabilities_match_reference(weighting):
  lengths = np.array([5, 10, 20, 65, 3, 3, 50])
  components = np.array([0, 0, 0, 0, 1, 1, 2])
  weights = [0.5, 0.3, 0.2]
  p = episode_probabilities(lengths, weighting, components, weights)
  np.testing.assert_allclose(p, _reference_mixture_probabilities(lengths, components, weights,
                                                                   weighting), rtol=1e-12)


def test_mixture_sampling_ratios():
  lengths = np.array([50, 60, 70, 5, 6])  # the small component has far fewer steps
  components = np.array([0, 0, 0, 1, 1])
  sampler = RRDSampler(lengths, SamplerOptions(32, 2, seed=0, component_weights=(0.3, 0.7)),
                       component_ids=components)
  drawn = np.concatenate([sampler.plan(s).episode_ids for s in range(400)])
  share = np.mean(components[drawn] == 1)
  assert share == pytest.approx(0.7, abs=0.02)  # by weight, not by the components' sizes
  within = np.bincount(drawn[components[drawn] == 0], minlength=3)[:3]
  np.testing.assert_allclose(within / within.sum(), lengths[:3] / lengths[:3].sum(), atol=0.02)


# ---------------------------------------------------------------------------------------------
# Pipeline: targets and negatives in the batches
# ---------------------------------------------------------------------------------------------
def _loader(dataset_dir, offset=0.0, vocab_from=None):
  builder = rlds.open_builder(dataset_dir)
  index = rlds.build_index(builder, rlds.FeatureKeys())
  vocab = source.instruction_vocabulary(vocab_from or index.instructions)
  targets = returns.episode_targets(index.returns, index.lengths,
                                    np.full(len(index), offset, np.float32))
  return pipeline.EpisodeLoader(builder, index, rlds.FeatureKeys(), ModelInputs(image=False),
                                instruction_vocab=vocab, targets=targets), index


def test_time_penalty_in_batches(demos_dir):
  loader, index = _loader(demos_dir, offset=-0.05)
  batches = list(pipeline.train_dataset(loader, np.arange(len(index)), SamplerOptions(4, 3, seed=0),
                                        num_steps=5).as_numpy_iterator())
  for batch in batches:
    e = batch["episode_id"]
    np.testing.assert_allclose(batch["episode_return"], index.returns[e] - 0.05 * index.lengths[e],
                               rtol=1e-5)
    last = batch["step"] == (index.lengths[e][:, None] - 1)
    # LIBERO-like demos: reward 1 on the last step only; each step pays the time penalty
    np.testing.assert_allclose(batch["true_reward"], np.where(last, 1.0, 0.0) - 0.05, atol=1e-6)


def test_negatives_in_batches(demos_dir):
  loader, index = _loader(demos_dir)
  ids = np.arange(len(index))
  common = SamplerOptions(episodes_per_batch=8, sample_size=3, seed=0)
  plain = list(pipeline.train_dataset(loader, ids, common, num_steps=6).as_numpy_iterator())
  relabelled = list(pipeline.train_dataset(
      loader, ids, common.replace(negatives_ratio=0.5, negative_return=-0.5),
      num_steps=6).as_numpy_iterator())
  seen = 0
  for a, b in zip(plain, relabelled):
    np.testing.assert_array_equal(a["episode_id"], b["episode_id"])
    np.testing.assert_array_equal(a["state"], b["state"])  # the same frames ...
    neg = b["negative"]
    seen += neg.sum()
    np.testing.assert_array_equal(b["instruction_id"][~neg], a["instruction_id"][~neg])
    assert np.all(b["instruction_id"][neg] != a["instruction_id"][neg])  # ... another task
    assert np.all(b["instruction_id"][neg] > 0)
    np.testing.assert_allclose(b["episode_return"][~neg], a["episode_return"][~neg])
    np.testing.assert_allclose(b["episode_return"][neg], -0.5)
    np.testing.assert_allclose(b["true_reward"][neg],
                               np.broadcast_to((-0.5 / b["episode_length"][neg])[:, None],
                                               b["true_reward"][neg].shape), rtol=1e-6)
  assert 0 < seen < 48


# ---------------------------------------------------------------------------------------------
# Mixtures through source.open_source
# ---------------------------------------------------------------------------------------------
def _mixture_config(demos_dir, rollouts_dir, **overrides):
  from configs.libero_rrd import mixture_component  # pylint: disable=import-outside-toplevel
  config = tiny_config("", **{"model.kind": "mlp", **overrides})
  config.data.mixture.demos = mixture_component(demos_dir, weight=0.25, returns_kind="time_penalty",
                                                time_penalty=0.02)
  config.data.mixture.rollouts = mixture_component(rollouts_dir, weight=0.75)
  return config


def test_mixture_source_targets(demos_dir, rollouts_dir):
  config = _mixture_config(demos_dir, rollouts_dir)
  data = source.open_source(config, source.resolve_components(config), log=lambda *_: None)
  n_demos, n_rollouts = INSTRUCTED.num_episodes, ROLLOUTS.num_episodes
  assert len(data.index) == n_demos + n_rollouts
  np.testing.assert_array_equal(data.component_ids, [0] * n_demos + [1] * n_rollouts)
  lengths, raw = data.index.lengths, data.index.returns
  np.testing.assert_allclose(data.targets.returns[:n_demos], raw[:n_demos] - 0.02 * lengths[:n_demos])
  np.testing.assert_allclose(data.targets.returns[n_demos:], raw[n_demos:])
  assert data.targets.success[:n_demos].all() or raw[:n_demos].min() == 0
  assert not data.targets.success[n_demos:].all()  # 30% success rollouts include failures
  summary = data.summary()
  assert summary["mixture"]["rollouts"]["episodes"] == n_rollouts
  assert summary["mixture"]["demos"]["weight"] == 0.25
  # records of different shards stay addressable after concatenation
  assert len(data.index.shard_paths) == INSTRUCTED.num_shards + ROLLOUTS.num_shards
  assert data.index.shard_paths[data.index.shard_ids[-1]].startswith(os.path.dirname(rollouts_dir))


def test_mixture_component_missing_dir(demos_dir, rollouts_dir, tmp_path):
  bad = _mixture_config(demos_dir, rollouts_dir)
  bad.data.mixture.rollouts.dataset_dir = os.path.join(str(tmp_path), "missing", "1.0.0")
  with pytest.raises(UserError, match="does not exist"):
    source.open_source(bad, source.resolve_components(bad), log=lambda *_: None)


# ---------------------------------------------------------------------------------------------
# ROC-AUC
# ---------------------------------------------------------------------------------------------
def test_roc_auc_matches_pairwise_definition():
  rng = np.random.default_rng(0)
  for _ in range(100):
    pos = rng.integers(0, 4, size=rng.integers(1, 8)).astype(float)
    neg = rng.integers(0, 4, size=rng.integers(1, 8)).astype(float)
    pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg]
    assert evaluation.roc_auc(pos, neg) == pytest.approx(np.mean(pairs), abs=1e-12)
  assert evaluation.roc_auc([2, 3], [0, 1]) == 1.0
  assert evaluation.roc_auc([0], [1]) == 0.0
  assert np.isnan(evaluation.roc_auc([], [1.0]))


# ---------------------------------------------------------------------------------------------
# Training with negatives reports the instruction AUC; a mixture run's predictions
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_with_negatives_and_mixture_reports_aucs(demos_dir, rollouts_dir, tmp_path):
  from rrd_jax.cli import train
  from rrd_jax.infer import predict  # pylint: disable=import-outside-toplevel
  config = _mixture_config(demos_dir, rollouts_dir, **{
      "model.use_instruction": True, "returns.negatives_ratio": 0.5, "eval.episodes": 8,
      "data.eval_fraction": 0.4})
  workdir = str(tmp_path / "run")
  results = train.train_and_evaluate(config, workdir, log=lambda *_: None)
  assert 0.0 <= results["eval/instruction_auc"] <= 1.0
  with pytest.raises(UserError, match="mixture of 2 datasets"):
    predict.predict_dataset(workdir, str(tmp_path / "preds"), log=lambda *_: None)
  stats = predict.predict_dataset(workdir, str(tmp_path / "preds"), dataset_dir=demos_dir,
                                  plot=False, log=lambda *_: None)
  assert stats["episodes"] == INSTRUCTED.num_episodes
  saved = np.load(tmp_path / "preds" / "predicted_rewards.npz")
  # the demos component's return definition (time penalty 0.02) applies to its predictions
  np.testing.assert_allclose(saved["episode_return_true"],
                             1.0 * (saved["episode_length"] > 0) * _raw(demos_dir)
                             - 0.02 * saved["episode_length"], rtol=1e-5)


def _raw(dataset_dir):
  return rlds.build_index(rlds.open_builder(dataset_dir), rlds.FeatureKeys()).returns
