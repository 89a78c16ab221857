"""End to end on the tiny embedded dataset: train writes its run files, is deterministic given the
seed, and predict covers every step of every episode with return_pred = sum of predicted rewards."""

import csv
import glob
import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from rrd_jax.cli import train
from rrd_jax.data import rlds
from rrd_jax.infer import predict
from rrd_jax.run import checkpoint
from rrd_jax.train import prepare
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # end-to-end: CLI runs and training (pytest -m "not slow" skips them)


def read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def run(tiny_dataset_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run") / "w")
  results = train.train_and_evaluate(tiny_config(tiny_dataset_dir), workdir, log=lambda *_: None)
  return workdir, results


def test_run_files(run, tiny_dataset_dir):
  workdir, results = run
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    record = json.load(f)
  assert record["config"]["rrd"]["sample_size"] == 4
  assert record["config"]["data"]["dataset_dir"] == tiny_dataset_dir
  assert record["dataset"]["episodes"] == 16
  assert record["dataset"]["train_episodes"] + record["dataset"]["eval_episodes"] == 16
  rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  train_rows = [r for r in rows if "train/loss" in r]
  assert [r["step"] for r in train_rows] == [2, 4, 6]
  assert record["config"]["rrd"]["loss_form"] == "mean" and not record["config"]["rrd"][
      "bias_correction"]
  # The mean-form loss is mean_b (m_b - R_b/T_b)^2 and return_mse is mean_b (T_b m_b - R_b)^2
  # (both averaged over the same steps), so T_min^2 loss <= return_mse <= T_max^2 loss: the logged
  # loss is the mean form of this batch's predictions, not the return form (ratio 1), an unsquared
  # or unnormalised error. Measured ratios 56..145 (seeds 0, 3, 7: 52..178); here [36, 196].
  lengths = rlds.build_index(rlds.open_builder(tiny_dataset_dir), rlds.FeatureKeys()).lengths
  low, high = float(lengths.min()) ** 2, float(lengths.max()) ** 2
  for r in train_rows:
    loss, mse = r["train/loss"], r["train/return_mse"]
    assert np.isfinite(loss) and loss > 0, r
    assert low * loss * (1 - 1e-5) <= mse <= high * loss * (1 + 1e-5), (r, mse / loss)
  eval_rows = [r for r in rows if "eval/loss" in r]
  assert [r["step"] for r in eval_rows] == [3, 6]
  assert {"eval/within_pearson", "eval/pooled_pearson", "eval/return_r2"} <= set(eval_rows[-1])
  # the same figures on training episodes, side by side (overfitting shows as a gap)
  assert {"train_eval/loss", "train_eval/within_pearson"} <= set(eval_rows[-1])
  assert eval_rows[-1]["train_eval/loss"] != eval_rows[-1]["eval/loss"]
  assert results["eval/loss"] == pytest.approx(eval_rows[-1]["eval/loss"])
  events = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
  assert events
  accumulator = event_accumulator.EventAccumulator(events[0], size_guidance={"tensors": 0})
  accumulator.Reload()
  tags = set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["scalars"])
  assert {"train/loss", "eval/loss"} <= tags
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "steps", "6"))


def test_training_is_deterministic_given_the_seed(run, tiny_dataset_dir, tmp_path):
  workdir, _ = run
  again = str(tmp_path / "again")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir), again, log=lambda *_: None)
  losses = lambda w: [r["train/loss"] for r in read_jsonl(os.path.join(w, "metrics.jsonl"))
                      if "train/loss" in r]
  assert losses(again) == losses(workdir)
  jax.tree.map(np.testing.assert_array_equal, prepare.restore_run_state(again)[0].params,
               prepare.restore_run_state(workdir)[0].params)
  other = str(tmp_path / "other_seed")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, seed=7), other, log=lambda *_: None)
  assert losses(other) != losses(workdir)


def test_predict_covers_every_step(run, tiny_dataset_dir, tmp_path):
  workdir, _ = run
  out = str(tmp_path / "pred")
  stats = predict.predict_dataset(workdir, out, log=lambda *_: None)
  builder = rlds.open_builder(tiny_dataset_dir)
  index = rlds.build_index(builder, rlds.FeatureKeys())
  arrays = np.load(os.path.join(out, "predicted_rewards.npz"))
  assert len(arrays["reward"]) == index.lengths.sum() == stats["steps"]
  assert np.all(np.isfinite(arrays["reward"]))
  with open(os.path.join(out, "returns.csv"), newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(index)
  for e, row in enumerate(rows):
    assert int(row["episode"]) == e
    assert row["file_path"] == index.file_paths[e]
    mask = arrays["episode"] == e
    assert int(row["length"]) == index.lengths[e] == mask.sum()
    np.testing.assert_array_equal(arrays["step"][mask], np.arange(index.lengths[e]))
    assert float(row["return_true"]) == pytest.approx(index.returns[e], rel=1e-5)
    assert float(row["return_true"]) == pytest.approx(arrays["dataset_reward"][mask].sum(), abs=1e-4)
    assert float(row["return_pred"]) == pytest.approx(arrays["reward"][mask].sum(), rel=1e-4,
                                                       abs=1e-4)
  # Batching does not change predictions.
  out_small = str(tmp_path / "pred_small")
  predict.predict_dataset(workdir, out_small, batch_size=8, log=lambda *_: None)
  np.testing.assert_allclose(np.load(os.path.join(out_small, "predicted_rewards.npz"))["reward"],
                             arrays["reward"], rtol=1e-5, atol=1e-6)


def test_predict_saves_cumulative_rewards_summary_and_plots(run, tmp_path):
  workdir, _ = run
  out = str(tmp_path / "pred")
  predict.predict_dataset(workdir, out, log=lambda *_: None)
  arrays = np.load(os.path.join(out, "predicted_rewards.npz"))
  lengths = arrays["episode_length"]
  assert len(lengths) == 16 and lengths.sum() == len(arrays["reward"])
  for e in range(16):
    mask = arrays["episode"] == e
    # Running sums are the cumulative sums of the per-step rewards, ending at the episode's
    # predicted return.
    np.testing.assert_allclose(arrays["cumulative_reward"][mask], np.cumsum(arrays["reward"][mask]),
                               rtol=1e-5, atol=1e-5)
    assert arrays["episode_return_pred"][e] == pytest.approx(arrays["cumulative_reward"][mask][-1],
                                                             rel=1e-4, abs=1e-4)
    assert arrays["episode_return_true"][e] == pytest.approx(arrays["dataset_reward"][mask].sum(),
                                                             abs=1e-4)
  with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  per_instruction = summary["per_instruction"]
  instructions = [str(s) for s in arrays["episode_instruction"]]
  assert sum(v["episodes"] for v in per_instruction.values()) == 16
  for instruction, values in per_instruction.items():
    ids = [e for e, s in enumerate(instructions) if s == instruction]
    assert values["episodes"] == len(ids)
    assert values["return_true_mean"] == pytest.approx(arrays["episode_return_true"][ids].mean())
    assert values["return_pred_mean"] == pytest.approx(arrays["episode_return_pred"][ids].mean(),
                                                       rel=1e-5)
  best = checkpoint.available_steps(os.path.join(workdir, "checkpoints"), "best")
  assert summary["checkpoint"] == "best" and [summary["checkpoint_step"]] == best  # the default
  for name in ("episodes.png", "returns.png", "reward_hist.png"):
    with open(os.path.join(out, "plots", name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_training_logs_an_episodes_image_to_tensorboard(run):
  workdir, _ = run
  events = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
  accumulator = event_accumulator.EventAccumulator(events[0], size_guidance={"tensors": 0,
                                                                            "images": 0})
  accumulator.Reload()
  tags = set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["images"])
  assert "eval/episodes" in tags


def test_predict_refuses_an_out_that_is_not_its_own_empty_or_new_directory(run, tiny_dataset_dir,
                                                                           tmp_path):
  from rrd_jax.util.errors import UserError  # pylint: disable=import-outside-toplevel
  workdir, _ = run
  cases = {"a user's files": ("is not empty", {"summary.txt": "mine"}),
           "an RLDS dataset": ("is an RLDS dataset", None),
           "an interrupted prediction": ("incomplete prediction (interrupted); delete it",
                                         {"predicted_rewards.npz": "", ".incomplete": ""})}
  for name, (message, contents) in cases.items():
    out = str(tmp_path / name.replace(" ", "_"))
    if contents is None:
      shutil.copytree(tiny_dataset_dir, out)
    else:
      os.makedirs(out)
      for file_name, text in contents.items():
        with open(os.path.join(out, file_name), "w", encoding="utf-8") as f:
          f.write(text)
    before = sorted(os.listdir(out))
    with pytest.raises(UserError, match=re.escape(message)):
      predict.predict_dataset(workdir, out, log=lambda *_: None)
    assert sorted(os.listdir(out)) == before, name
  done = str(tmp_path / "done")
  predict.predict_dataset(workdir, done, plot=False, log=lambda *_: None)
  assert not os.path.exists(os.path.join(done, ".incomplete"))
  with pytest.raises(UserError, match="already holds predictions"):
    predict.predict_dataset(workdir, done, log=lambda *_: None)


def test_predict_uses_the_best_checkpoint_by_default_and_says_which(run, tiny_dataset_dir,
                                                                    tmp_path, capsys):
  workdir, _ = run
  best = checkpoint.available_steps(os.path.join(workdir, "checkpoints"), "best")[0]
  best_params = prepare.restore_run_state(workdir, "best")[0].params
  latest_params = prepare.restore_run_state(workdir, "latest")[0].params
  predictor = predict.RunPredictor(workdir)
  assert (predictor.which, predictor.step) == ("best", best)
  jax.tree.map(np.testing.assert_array_equal, predictor.model.params, best_params)
  predict.predict_dataset(workdir, str(tmp_path / "p"), plot=False, log=print)
  assert f"with the best checkpoint (step {best}) of {workdir}" in capsys.readouterr().out
  latest = predict.RunPredictor(workdir, checkpoint_name="latest")
  assert latest.step == 6
  jax.tree.map(np.testing.assert_array_equal, latest.model.params, latest_params)
  # a run without held-out episodes keeps no best checkpoint: the default is the latest
  no_eval = str(tmp_path / "no_eval")
  train.train_and_evaluate(tiny_config(tiny_dataset_dir, **{"data.eval_fraction": 0.0,
                                                            "train.num_steps": 2}),
                           no_eval, log=lambda *_: None)
  assert (predict.RunPredictor(no_eval).which, predict.RunPredictor(no_eval).step) == ("latest", 2)
