"""Held-out quality of the pixel reward model on a small dataset as training goes on, with and
without the DrQ shift augmentation (model.augment).

python -m benchmarks.generalisation [--quick] [--out RESULT.json]

The embedded LIBERO-layout dataset (its dense reward is known) with 200 episodes, 25 of them held
out (data.eval_fraction=0.125), the default config otherwise (64x64, 8 episodes x 32 steps);
5,000 updates (--quick: 1,000), evaluated every 500 on all 25 held-out episodes. Per config: the
held-out within-episode Pearson, pooled Pearson, RRD loss and the train loss at each evaluation.
"""

import json
import os
import tempfile
import time

from benchmarks import common
from rrd_jax import config_utils, train

BENCH_DIR = "~/.cache/rrd_jax/bench"
CONFIGS = {
    "pixel, augment=none": {"model.augment": "none"},
    "pixel, augment=shift": {"model.augment": "shift"},
}


def _curve(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"),
                                            encoding="utf-8")]
  train_loss = {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}
  return [{"step": r["step"], "within_pearson": r["eval/within_pearson"],
           "pooled_pearson": r["eval/pooled_pearson"], "eval_loss": r["eval/loss"],
           "train_loss": train_loss.get(r["step"])}
          for r in rows if "eval/within_pearson" in r]


def run(quick=False):
  steps = 1000 if quick else 5000
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name, overrides in CONFIGS.items():
      config = config_utils.load_config(overrides={
          "data.embedded_dir": BENCH_DIR, "data.embedded_episodes": 200,
          "data.eval_fraction": 0.125, "train.num_steps": steps, "eval.every_steps": 500,
          "eval.episodes": 25, "checkpoint.every_steps": 0, **overrides})
      workdir = os.path.join(tmp, name.replace(" ", "").replace(",", "_").replace("=", "-"))
      start = time.perf_counter()
      train.train_and_evaluate(config, workdir, log=lambda *_: None)
      curve = _curve(workdir)
      results[name] = {"overrides": overrides, "wall_s": round(time.perf_counter() - start, 1),
                       "curve": curve, "final_within_pearson": curve[-1]["within_pearson"],
                       "best_within_pearson": max(p["within_pearson"] for p in curve)}
      print(f"{name}: " + ", ".join(f"{p['step']}: {p['within_pearson']:.3f}" for p in curve),
            flush=True)
  return {"episodes": 200, "held_out": 25, "updates": steps, "configs": results}


if __name__ == "__main__":
  common.benchmark_main("generalisation", run, __doc__)
