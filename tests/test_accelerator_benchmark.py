"""benchmarks/accelerator.py's pieces (the whole benchmark is not a test): the shapes and batches it
builds, its JSON from small internal functions, its robustness (a failing part, the time budget),
the seed commands it runs, and the PyTorch port's equivalence at its new throughput shape."""

import dataclasses
import json
import os
import time

import jax
import numpy as np
import pytest

from benchmarks import accelerator, common, reward_step, run as bench_run
from benchmarks.accelerator_parts import (datasets, device_cache, guards, rendered, seed_command,
                                          step)
from rrd_jax.run import parallel

THROUGHPUT = ("throughput_32x32_128px", 32, 32, 128)


def test_full_plan_shapes_and_dataset_size():
  plan = accelerator.FULL
  assert plan.step_shapes == (("seed_1x32_256px", 1, 32, 256), THROUGHPUT)
  assert [s[:4] for s in plan.stream_shapes] == list(plan.step_shapes)
  assert plan.cache_batch == (32, 32) and plan.cache_image_size == 128
  # LIBERO-10: 379 episodes, 101,469 frames; uniform lengths give the same mean (267.7).
  assert plan.cache_episodes == 379
  expected_frames = plan.cache_episodes * sum(plan.cache_lengths) / 2
  assert abs(expected_frames - 101_469) / 101_469 < 0.01
  assert (plan.seed_epochs * plan.seed_cycles, plan.seed_image_size) == (500, 256)
  assert plan.budget_s <= 8 * 60 - 20 and accelerator.QUICK.budget_s <= 3 * 60 - 5
  for name, episodes, steps, size in accelerator.QUICK.step_shapes:
    assert episodes * steps <= 32 and size == 64, name
  assert accelerator.QUICK.cache_batch[0] % jax.device_count() == 0


def test_device_batches_have_the_benchmark_shapes_and_dtypes():
  _, episodes, steps, size = THROUGHPUT
  batch = reward_step.make_batch(episodes, steps, size, seed=1)
  mesh = parallel.make_mesh(1)
  device_batch = step.jax_device_batch(batch, ["image", "state", "next_state", "action"],
                                              mesh)
  shapes = {k: (v.shape, str(v.dtype)) for k, v in device_batch.items()}
  assert shapes == {"image": ((32, 32, 128, 128, 3), "uint8"),
                    "state": ((32, 32, 8), "float32"), "next_state": ((32, 32, 8), "float32"),
                    "action": ((32, 32, 7), "float32"), "true_reward": ((32, 32), "float32"),
                    "episode_return": ((32,), "float32"), "episode_length": ((32,), "int32")}
  assert all(isinstance(v, jax.Array) for v in device_batch.values())
  np.testing.assert_array_equal(np.asarray(device_batch["image"]), batch["image"])


def test_torch_batch_is_on_the_device_with_the_ports_dtypes():
  torch = pytest.importorskip("torch")
  batch = reward_step.make_batch(2, 4, 44, seed=1)
  tensors = step.torch_device_batch(batch, torch.device("cpu"))
  assert tensors["image"].shape == (2, 4, 44, 44, 3) and tensors["image"].dtype == torch.uint8
  assert tensors["episode_length"].dtype == torch.float32
  assert {t.device.type for t in tensors.values()} == {"cpu"}


def test_step_figures_speedups_and_missing_variants():
  rates = {"jax_float32": 30.0, "jax_bfloat16": 60.0, "torch_eager": 10.0, "torch_compile": 20.0}
  figures = step.step_figures(rates, frames_per_step=1024)
  assert figures["speedup_vs_eager"] == {"float32": 3.0, "bfloat16": 6.0}
  assert figures["speedup_vs_compile"] == {"float32": 1.5, "bfloat16": 3.0}
  assert figures["frames_per_s"]["torch_eager"] == 10_240
  figures = step.step_figures({"jax_float32": 30.0}, frames_per_step=32)
  assert figures["steps_per_s"]["torch_compile"] is None
  assert figures["speedup_vs_eager"] == {"float32": None, "bfloat16": None}
  assert figures["frames_per_s"]["jax_bfloat16"] is None


def test_step_shape_json_with_the_torch_sides_skipped(monkeypatch):
  """The JSON of one shape, the JAX runners replaced by stand-ins (the real one is run below)."""
  built = []

  def fake_jax_runner(batch, image_size, dtype):
    built.append((batch["image"].shape, image_size, dtype))
    return step.Runner(lambda: time.sleep(0.001), lambda: None), None, {"params": {}}

  monkeypatch.setattr(step, "jax_runner", fake_jax_runner)
  plan = dataclasses.replace(accelerator.QUICK, step_block_s=0.01, step_blocks=2)
  out, saves = {}, []
  step.step_shape(2, 4, 44, plan, {"skipped": "torch not installed"}, out,
                         lambda: saves.append(1))
  assert built == [((2, 4, 44, 44, 3), 44, "float32"), ((2, 4, 44, 44, 3), 44, "bfloat16")]
  assert saves
  assert (out["episodes"], out["steps_per_episode"], out["frames_per_step"]) == (2, 4, 8)
  for variant in ("jax_float32", "jax_bfloat16"):
    assert out[variant]["first_call_s"] > 0 and out[variant]["steps_per_block"] >= 1
    assert 0 < out["steps_per_s"][variant] < 1000
  assert out["torch_eager"] == out["torch_compile"] == {"skipped": "torch not installed"}
  assert out["speedup_vs_eager"] == {"float32": None, "bfloat16": None}
  assert out["blocks"] == 2 and "equivalence" not in out
  json.dumps(out)


def test_a_variant_that_fails_to_build_is_recorded(monkeypatch):
  def failing(batch, image_size, dtype):
    raise RuntimeError(f"no {dtype} here")

  monkeypatch.setattr(step, "jax_runner", failing)
  out = {}
  runners, model, params = step.step_runners(
      reward_step.make_batch(1, 2, 44), 44, {"version": "x"}, out)
  assert runners == {} and model is None and params is None
  assert out["jax_bfloat16"] == {"error": "RuntimeError: no bfloat16 here"}
  assert "jax_float32 failed" in out["torch_eager"]["skipped"]


def test_jax_and_torch_eager_runners_step():
  pytest.importorskip("torch")
  batch = reward_step.make_batch(2, 4, 44, seed=2)
  jax_runner, model, params = step.jax_runner(batch, 44, "float32")
  assert model is not None and set(params["params"]) >= {"image_trunk", "Dense_0"}
  torch_runner = step.torch_runner(batch, 44, params, compiled=False)
  for runner in (jax_runner, torch_runner):
    runner.calibrate(0.01)
    assert runner.first_call_s > 0 and runner.steps_per_block >= 1 and runner.block_rate() > 0


def test_pytorch_port_is_equivalent_at_the_throughput_shape():
  """Float32 loss within 1e-4 and every gradient within reward_step.GRAD_TOLERANCE (5e-3)
  relative, at 32 episodes x 32 steps at 128^2."""
  pytest.importorskip("torch")
  _, episodes, steps, size = THROUGHPUT
  batch = reward_step.make_batch(episodes, steps, size, seed=1)
  _, model, _, state, _, _ = reward_step.jax_setup(size)
  check = step.equivalence(batch, size, model, jax.device_get(state.params))
  assert check["equal"], check
  assert check["loss_rel_error"] < 1e-4
  assert check["max_grad_rel_error"] < reward_step.GRAD_TOLERANCE == check["grad_tolerance"]


def test_a_failing_part_is_recorded_and_the_others_still_run(monkeypatch):
  def fill(name):
    def part(out):
      if name == "device_cache":
        out["dataset"] = {"frames": 10}
        raise RuntimeError("out of memory")
      out["figure"] = 1.0
    return part

  monkeypatch.setattr(accelerator, "part_function", lambda name, *_: fill(name))
  monkeypatch.setattr(common, "has_module", lambda name: True)
  monkeypatch.setattr(guards, "release_memory", lambda: None)
  snapshots = []
  plan = dataclasses.replace(accelerator.QUICK, generate_in_background=False)
  result = accelerator.run(on_partial=lambda r: snapshots.append(json.loads(json.dumps(r))),
                           plan=plan)
  assert result["device_cache"]["error"] == "RuntimeError: out of memory"
  assert result["device_cache"]["dataset"] == {"frames": 10}  # what it had is kept
  for name in ("step", "stream", "seed_command"):
    assert result[name]["figure"] == 1.0 and result[name]["part_s"] >= 0
  assert len(snapshots) >= 5  # after every part, and at the end
  assert "step" in snapshots[0] and "stream" not in snapshots[0]
  assert result["summary"]["device_cache.error"] == "RuntimeError: out of memory"
  assert set(result["goals"]) >= {"step_float32_vs_eager", "device_cache_fraction_of_ceiling",
                                  "stream_data_wait_fraction"}


def test_parts_past_the_budget_or_without_tensorflow_are_skipped(monkeypatch):
  monkeypatch.setattr(common, "has_module", lambda name: name != "tensorflow")
  monkeypatch.setattr(guards, "release_memory", lambda: None)
  result = accelerator.run(plan=dataclasses.replace(accelerator.QUICK, budget_s=-1.0))
  for name in ("step", "device_cache"):  # part b runs without tensorflow (rendered frames)
    assert "budget" in result[name]["skipped"], name
  for name in ("stream", "seed_command"):
    assert result[name] == {"skipped": "tensorflow / tensorflow_datasets not installed"}


TINY_CACHE = dict(cache_episodes=5, cache_lengths=(8, 12), cache_image_size=36,
                  cache_batch=(2, 4), cache_chunk=4, cache_repeats=2)

NO_TENSORFLOW_CHILD = """import json, sys
sys.modules["tensorflow"] = sys.modules["tensorflow_datasets"] = None  # as if not installed
import dataclasses
from benchmarks import accelerator
plan = dataclasses.replace(accelerator.QUICK, **json.loads(sys.argv[1]))
result = accelerator.run(plan=plan)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets")
                and sys.modules[m] is not None)
print("RESULT " + json.dumps({"result": result, "tensorflow_modules": loaded}))
"""


def test_device_cache_runs_without_tensorflow_on_rendered_frames():
  """Part b with tensorflow and tensorflow_datasets blocked (a child process): frames rendered in
  memory by the embedded generator's numpy code, the real DeviceCache, finite figures; parts c-d
  are skipped. Part a is left out by its minimum time."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  changes = dict(TINY_CACHE, budget_s=100.0,
                 part_min_s=dict(accelerator.QUICK.part_min_s, step=1000, device_cache=0))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (common.ROOT, os.environ.get("PYTHONPATH", "")) if p))
  proc = subprocess.run([sys.executable, "-c", NO_TENSORFLOW_CHILD, json.dumps(changes)],
                        cwd=common.ROOT, env=env, capture_output=True, text=True,
                        timeout=240, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  child = json.loads(next(line[len("RESULT "):] for line in proc.stdout.splitlines()
                          if line.startswith("RESULT ")))
  assert child["tensorflow_modules"] == []
  result = child["result"]
  cache = result["device_cache"]
  assert "error" not in cache, (cache, proc.stderr[-3000:])
  assert cache["frames_source"] == rendered.RENDERED
  assert "rendered" in result["summary"]["device_cache.frames_source"]
  assert cache["dataset"]["episodes"] == 5 and 5 * 8 <= cache["dataset"]["frames"] <= 5 * 12
  assert cache["dataset"]["generator_frames_per_s"] > 0
  assert cache["cameras"] == 2 and cache["devices"] == jax.device_count()
  assert sum(cache["frames_per_device"]) == cache["dataset"]["frames"]
  for key in ("cache_steps_per_s", "ceiling_steps_per_s", "cache_build_s"):
    assert np.isfinite(cache[key]) and cache[key] > 0, key
  assert 0 < cache["fraction_of_ceiling"] < 2
  assert cache["batch"] == "2 x 4" and cache["image_size"] == 36
  assert "budget" in result["step"]["skipped"]
  for name in ("stream", "seed_command"):
    assert result[name] == {"skipped": "tensorflow / tensorflow_datasets not installed"}


def test_rendered_frames_are_the_rlds_datasets(tmp_path):
  """The no-tensorflow path's host table equals the one cache.py decodes from the generated RLDS
  dataset of the same sizes: same episodes, lengths, returns, instructions, states, actions and
  rewards; frames within the dataset's JPEG error."""
  pytest.importorskip("tensorflow_datasets")
  import re  # pylint: disable=import-outside-toplevel
  from rrd_jax.config.inputs import ModelInputs  # pylint: disable=import-outside-toplevel
  from rrd_jax.train import prepare  # pylint: disable=import-outside-toplevel
  plan = dataclasses.replace(accelerator.QUICK, **TINY_CACHE)
  episodes, lengths, size = plan.cache_episodes, plan.cache_lengths, plan.cache_image_size
  facts = datasets.generate_dataset(episodes, lengths, size, str(tmp_path))
  config = device_cache.cache_config(facts["dir"], plan)
  data = prepare.open_training_data(config, log=lambda *_: None)
  from rrd_jax.data import cache  # pylint: disable=import-outside-toplevel
  decoded = cache.build_table(data.loader, data.train_ids, progress=False)
  from_memory = rendered.RenderedLoader(rendered.render_episodes(episodes, lengths, size),
                                        ModelInputs.from_config(config), config.returns)
  assert from_memory.vocab == data.vocab and from_memory.input_sizes == tuple(data.input_sizes())
  order = [int(re.search(r"episode_(\d+)", path).group(1))
           for path in np.asarray(data.index.file_paths)[data.train_ids]]
  table = cache.build_table(from_memory, np.asarray(order), progress=False)
  np.testing.assert_array_equal(table.length, decoded.length)
  np.testing.assert_allclose(table.episode_return, decoded.episode_return)
  np.testing.assert_array_equal(table.instruction_id, decoded.instruction_id)
  for key in ("state", "action", "true_reward"):
    np.testing.assert_array_equal(table.frames[key], decoded.frames[key])
  for key in ("image", "wrist_image"):
    assert table.frames[key].shape == decoded.frames[key].shape == (len(table.frames["state"]),
                                                                    size, size, 3)
    error = np.abs(table.frames[key].astype(np.int16) - decoded.frames[key].astype(np.int16))
    assert error.mean() < 8, key  # JPEG (the dataset stores JPEGs)


def test_goals_and_summary():
  plan = accelerator.FULL
  result = {"step": {"throughput_32x32_128px": {
      "steps_per_s": {"jax_float32": 40.0}, "speedup_vs_eager": {"float32": 3.2, "bfloat16": None},
      "speedup_vs_compile": {"float32": 1.2, "bfloat16": 2.0}}},
            "device_cache": {"fraction_of_ceiling": 0.95, "frames_per_device": [5, 6],
                             "dataset": {"generation_s": 80.0}},
            "stream": {"seed_1x32_256px": {"training_data_wait_fraction": 0.25}},
            "seed_command": {"streaming": {"wall_s": 70.0, "data_stats": {"build_seconds": 0.0}}}}
  goals = accelerator.goals(result, plan)
  assert goals["step_float32_vs_eager"] == {"value": 3.2, "goal": ">= 3.0", "met": True}
  assert goals["step_float32_vs_compile"]["met"] is False
  assert goals["step_bfloat16_vs_eager"]["met"] is None  # not measured
  assert goals["device_cache_fraction_of_ceiling"]["met"] is True
  assert goals["stream_data_wait_fraction"] == {"value": 0.25, "goal": "<= 0.1", "met": False}
  summary = accelerator.summary(result)
  assert summary["step.throughput_32x32_128px.speedup_vs_eager.float32"] == 3.2
  assert summary["device_cache.fraction_of_ceiling"] == 0.95
  assert summary["device_cache.dataset.generation_s"] == 80.0
  assert summary["seed_command.streaming.wall_s"] == 70.0
  assert not any("data_stats" in k or "frames_per_device" in k for k in summary)


def test_seed_commands_are_the_legacy_command_and_its_cached_equivalent(tmp_path):
  runs = seed_command.seed_commands("/data/libero_10/1.0.0", accelerator.FULL, str(tmp_path))
  legacy_args, cwd, workdir = runs["streaming"]
  assert legacy_args[:2] == ["-m", "rrd_jax.cli.pytorch_flags"] and "--cuda" in legacy_args
  flags = {a: legacy_args[i + 1] for i, a in enumerate(legacy_args)
           if a.startswith("--") and a != "--cuda"}
  assert flags["--libero_dataset_path"] == "/data/libero_10/1.0.0"
  assert (flags["--libero_image_size"], flags["--epochs"], flags["--cycles"]) == ("256", "10", "50")
  assert (flags["--rrd_batch_size"], flags["--rrd_sample_size"]) == ("32", "32")
  assert workdir == os.path.join(cwd, "log", seed_command.SEED_TAG)
  train_args, cwd, workdir = runs["device_cached"]
  assert train_args[:2] == ["-m", "rrd_jax.cli.train"] and "--config.data.cache=device" in train_args
  for override in ("--config.train.num_steps=500", "--config.rrd.episodes_per_batch=1",
                   "--config.data.image_size=256", "--config.rrd.loss_form=return",
                   "--config.data.dataset_dir=/data/libero_10/1.0.0"):
    assert override in train_args
  assert train_args[train_args.index("--workdir") + 1] == workdir


def test_run_metrics_reads_a_runs_files(tmp_path):
  rows = [{"step": 50, "train/steps_per_s": 1.0, "train/data_wait_fraction": 0.9},
          {"step": 100, "train/steps_per_s": 30.0, "train/data_wait_fraction": 0.2},
          {"step": 100, "eval/loss": 0.1},
          {"step": 150, "train/steps_per_s": 50.0, "train/data_wait_fraction": 0.4}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (tmp_path / "data_stats.json").write_text(json.dumps({"cache": "device", "devices": 1}))
  metrics = seed_command.run_metrics(str(tmp_path))
  assert metrics["train_steps_per_s"] == 40.0  # the first interval (compilation) left out
  assert metrics["train_data_wait_fraction"] == pytest.approx(0.3)
  assert metrics["last_step"] == 150 and metrics["data_stats"]["cache"] == "device"


def test_background_generation_gives_the_same_dataset(tmp_path):
  root = str(tmp_path)
  child = datasets.start_generation(4, (5, 8), 32, root)
  facts = datasets.dataset({"children": {"cache": child}}, "cache", 4, (5, 8), 32, 120, root)
  assert facts["generated"] and facts["generated_in_background"]
  assert os.path.exists(os.path.join(facts["dir"], "dataset_info.json"))
  again = datasets.dataset({}, "cache", 4, (5, 8), 32, 120, root)
  assert again["dir"] == facts["dir"] and not again["generated"]


def test_run_py_registers_the_benchmark_and_passes_partial_results(monkeypatch):
  assert "accelerator" in bench_run.BENCHMARKS

  def fake_run(quick, on_partial=None):
    on_partial({"step": {"quick": quick}})
    return {"step": {"quick": quick}, "done": True}

  monkeypatch.setattr(accelerator, "run", fake_run)
  partials = []
  result = bench_run.run_one("accelerator", True, partials.append)
  assert partials == [{"step": {"quick": True}}]
  assert result["done"] and "wall_s" in result


def test_a_variant_that_fails_while_timed_is_dropped_and_the_others_are_timed():
  calls = {"n": 0}

  def flaky():
    calls["n"] += 1
    if calls["n"] > 6:  # past the first call and the calibration
      raise RuntimeError("CUDA out of memory")

  runners = {"jax_float32": step.Runner(lambda: None, lambda: None),
             "torch_compile": step.Runner(flaky, lambda: None)}
  failures = {}
  rates = step.interleaved_rates(runners, 3, 0.001, failures)
  assert failures == {"torch_compile": "RuntimeError: CUDA out of memory"}
  assert set(rates) == {"jax_float32"} and rates["jax_float32"] > 0
