"""Every registered benchmark at its --smoke size (tiny shapes, one repeat), in one
`python -m benchmarks.run --smoke` process: each must finish without an error and write the
figures BENCHMARKS.md's tables are made from. The PyTorch figures are checked only where torch is
installed (it is a benchmark-only dependency, benchmarks/requirements.txt); without it they must
still be there, as None, and the JAX side of every benchmark still runs. Also the runner itself:
its exit status when a benchmark fails, --no-keep-going, --report, and the device scripts'
(accelerator, agent_suite) own command lines on the smoke figures."""

import json
import math
import subprocess
import sys
import types

import pytest

from benchmarks import accelerator, agent_suite, common, run as bench_run

SMOKE_TIMEOUT_S = 1500
# The tests that read the smoke run are end-to-end (one process running every benchmark, 2-4
# minutes on 2 cores): pytest -m "not slow" leaves them out; the runner's own tests stay in.
end_to_end = pytest.mark.slow
TORCH_SKIP = ("torch is not installed: PyTorch is a benchmark-only dependency "
              "(pip install -r benchmarks/requirements.txt); the JAX side is checked without it")

# {benchmark: (figures of the JAX side, figures of the PyTorch side)}: dotted paths into its JSON
# ("*": every key or list item at that level), the figures BENCHMARKS.md's tables quote.
STEP_SHAPES = [name for name, *_ in accelerator.SMOKE.step_shapes]
STREAM_SHAPES = [name for name, *_ in accelerator.SMOKE.stream_shapes]
# PyTorch figures a benchmark leaves out (instead of writing None) when torch is not installed:
# the accelerator checks the port's equivalence only where it has torch.
ABSENT_WITHOUT_TORCH = {f"step.{shape}.equivalence.max_grad_rel_error" for shape in STEP_SHAPES}
FIGURES = {
    "reward_step": (
        ["shapes.*.jax_step_s_median", "shapes.*.jax_samples_per_s"],
        ["shapes.*.torch_step_s_median", "shapes.*.torch_samples_per_s", "shapes.*.speedup",
         "shapes.*.speedup_best_of", "shapes.*.torch_compile_step_s_median",
         "shapes.*.torch_compile_samples_per_s", "shapes.*.speedup_vs_compile",
         "shapes.*.equivalence.loss_rel_error", "shapes.*.equivalence.max_grad_rel_error",
         "speedup_by_shape.*", "speedup_vs_compile_by_shape.*"]),
    "pipeline": (["delivered_frames_per_s", "consumed_frames_per_s", "headroom",
                  "training_frames_per_s", "training_data_wait_fraction"], []),
    "load": (["ours_ttfs_s", "ours_first_run_ttfs_s", "ours_peak_rss_gb"],
             ["theirs_ttfs_s", "ttfs_ratio", "first_run_ttfs_ratio", "theirs_peak_rss_gb",
              "rss_ratio", "theirs_projected_rss_gb_256px_libero10"]),
    "checkpoint_io": (["params", "checkpoint_bytes", "save_s_median",
                       "save_blocking_loop_s_median", "restore_s_median"], []),
    "scaling": ([f"results.{layout}.{key}" for layout in ("1_device", "8_fake_devices",
                                                          "2_processes")
                 for key in ("steps_per_s", "relative_to_1_device")], []),
    "device_cache": (["cache_steps_per_s", "ceiling_steps_per_s", "fraction_of_ceiling",
                      "stream_steps_per_s", "cache_speedup_vs_stream",
                      "sample_gather_ms_per_step", "cache_build_s"], []),
    "sac": (["jax_updates_per_s", "jax_rrd_sac_updates_per_s", "env_steps_per_s"],
            ["torch_eager_updates_per_s", "speedup_vs_eager", "torch_eager_device_updates_per_s",
             "speedup_vs_eager_device", "torch_compile_updates_per_s", "speedup_vs_compile",
             "torch_compile_s"]),
    "accelerator": (
        [*[f"step.{shape}.steps_per_s.jax_{dtype}" for shape in STEP_SHAPES
           for dtype in ("float32", "bfloat16")],
         "device_cache.cache_steps_per_s", "device_cache.ceiling_steps_per_s",
         "device_cache.fraction_of_ceiling", "device_cache.cache_build_s",
         *[f"stream.{shape}.{key}" for shape in STREAM_SHAPES
           for key in ("delivered_frames_per_s", "consumed_frames_per_s",
                       "training_data_wait_fraction")],
         "seed_command.streaming.wall_s", "seed_command.device_cached.wall_s",
         "goals.device_cache_fraction_of_ceiling.value"],
        [f"step.{shape}.{key}" for shape in STEP_SHAPES
         for key in ("steps_per_s.torch_eager", "steps_per_s.torch_compile",
                     "speedup_vs_eager.float32", "speedup_vs_compile.float32",
                     "equivalence.max_grad_rel_error")]),
    "agent_suite": (["runs.*.env_steps_per_s_per_member", "runs.*.wall_s",
                     "runs.*.updates_per_s_per_member",
                     *[f"runs.*.returns.*.{key}" for key in ("final_mean", "final_std",
                                                             "last3_mean", "last3_std")]], []),
}


def values(tree, path):
  """[(concrete path, value)] at a dotted path ("*" expands); a missing key gives KeyError."""
  head, _, rest = path.partition(".")
  if head == "*":
    items = list(tree.items()) if isinstance(tree, dict) else list(enumerate(tree))
    assert items, f"nothing under {path}"
  else:
    items = [(head, tree[head])]
  if not rest:
    return [(str(key), value) for key, value in items]
  return [(f"{key}.{sub}", value) for key, child in items for sub, value in values(child, rest)]


def check_figures(result, paths, numbers=True):
  """Every path is in `result`; numbers=True: each is a finite number (else: it may be None)."""
  problems = []
  for path in paths:
    try:
      found = values(result, path)
    except (KeyError, TypeError, IndexError, AssertionError) as e:
      problems.append(f"{path}: missing ({type(e).__name__}: {e})")
      continue
    for where, value in found:
      if numbers and not (isinstance(value, (int, float)) and math.isfinite(value)):
        problems.append(f"{where}: {value!r} is not a finite number")
  return problems


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  """(exit status, {benchmark: figures}, output tail, JSON path) of `python -m benchmarks.run
  --smoke`."""
  out = tmp_path_factory.mktemp("smoke") / "summary.json"
  proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
                        cwd=common.ROOT, env=common.child_env(PYTHONUNBUFFERED="1"),
                        capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, check=False)
  results = json.loads(out.read_text()) if out.exists() else {}
  return proc.returncode, results, (proc.stdout + proc.stderr)[-6000:], out


@end_to_end
def test_every_benchmark_runs_its_smoke_size_without_an_error(smoke):
  returncode, results, log, out = smoke
  failed = {name: bench_run.errors(results.get(name, {"error": "no result"}))
            for name in bench_run.BENCHMARKS}
  assert not any(failed.values()), ({k: v for k, v in failed.items() if v}, log)
  assert returncode == 0, log
  assert set(results) == {"machine", "provenance", *bench_run.BENCHMARKS}
  assert results["provenance"]["command"] == f"python -m benchmarks.run --smoke --out {out}"
  for name in bench_run.BENCHMARKS:
    assert "skipped" not in results[name], (name, results[name])


@end_to_end
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_smoke_writes_the_jax_sides_figures(smoke, name):
  _, results, log, _ = smoke
  assert name in results, log
  assert not check_figures(results[name], FIGURES[name][0]), (
      check_figures(results[name], FIGURES[name][0]), log)


@end_to_end
@pytest.mark.parametrize("name", sorted(n for n, (_, torch_side) in FIGURES.items() if torch_side))
def test_smoke_writes_the_pytorch_sides_figures(smoke, name):
  _, results, log, _ = smoke
  assert name in results, log
  paths = FIGURES[name][1]
  present = [p for p in paths if p not in ABSENT_WITHOUT_TORCH]  # with or without torch
  assert not check_figures(results[name], present, numbers=False), log
  if not common.has_module("torch"):
    pytest.skip(TORCH_SKIP)
  assert not check_figures(results[name], paths), (check_figures(results[name], paths), log)


def test_every_registered_benchmark_has_its_figures_listed():
  assert set(FIGURES) == set(bench_run.BENCHMARKS)


@end_to_end
def test_the_device_scripts_command_lines_on_the_smoke_figures(smoke, monkeypatch, tmp_path,
                                                               capsys):
  """`python -m benchmarks.accelerator --smoke --out F` and `python -m benchmarks.agent_suite
  --smoke --out F` (the GPU calls' own commands), their runs replaced by the smoke run's figures:
  the size reaches them, the JSON is written, agent_suite prints every run."""
  _, results, _, _ = smoke
  sizes = []

  def fake_accelerator_run(size, on_partial=None):
    sizes.append(size)
    on_partial(results["accelerator"])
    return results["accelerator"]

  monkeypatch.setattr(accelerator, "run", fake_accelerator_run)
  out = tmp_path / "accelerator.json"
  monkeypatch.setattr(sys, "argv", ["accelerator", "--smoke", "--out", str(out)])
  accelerator.main()
  assert sizes == ["smoke"] and set(json.loads(out.read_text())) == {"machine", "accelerator"}

  def fake_agent_run(args):
    sizes.append(args.size)
    return results["agent_suite"]

  monkeypatch.setattr(agent_suite, "_run", fake_agent_run)
  agent_suite.main(["--smoke", "--out", str(tmp_path / "agent_suite.json")])
  assert sizes[-1] == "smoke"
  printed = capsys.readouterr().out
  for row in results["agent_suite"]["runs"]:
    assert f"{row['task']} ({row['backend']}" in printed


def _fake_benchmarks(monkeypatch):
  """The runner's registry with two stand-ins: "boom" raises, "fine" returns a figure."""
  calls = []

  def boom(size):
    calls.append(("boom", size))
    raise RuntimeError("a broken benchmark")

  def fine(size):
    calls.append(("fine", size))
    return {"figure": 1.5}

  monkeypatch.setattr(bench_run, "BENCHMARKS", {"boom": boom, "fine": fine})
  monkeypatch.setattr(bench_run, "machine_info", lambda: {"cpu": "test"})
  return calls


def test_the_runner_exits_non_zero_when_a_benchmark_fails(monkeypatch, tmp_path, capsys):
  calls = _fake_benchmarks(monkeypatch)
  out = tmp_path / "result.json"
  assert bench_run.main(["--smoke", "--only", "boom,fine", "--out", str(out)]) == 1
  assert calls == [("boom", "smoke"), ("fine", "smoke")]  # --keep-going is the default
  results = json.loads(out.read_text())
  assert results["boom"] == {"error": "RuntimeError: a broken benchmark"}
  assert results["fine"]["figure"] == 1.5
  table = capsys.readouterr().out
  assert "FAILED boom  error" in table and "FAILED boom: error: RuntimeError" in table
  assert "fine  figure" in table and "FAILED fine" not in table
  assert bench_run.main(["--only", "fine"]) == 0
  assert calls[-1] == ("fine", "full")


def test_the_runner_counts_an_error_inside_a_result_and_can_stop_at_the_first(monkeypatch):
  calls = _fake_benchmarks(monkeypatch)
  assert bench_run.main(["--quick", "--only", "boom,fine", "--no-keep-going"]) == 1
  assert calls == [("boom", "quick")]
  monkeypatch.setitem(bench_run.BENCHMARKS, "fine", lambda size: {"part": {"error": "x"}})
  assert bench_run.main(["--only", "fine"]) == 1
  assert bench_run.errors({"runs": [{"ok": 1}, {"error": "y"}]}) == ["runs.1.error: y"]


def test_report_calls_the_report_modules_main_with_the_rest_of_the_arguments(monkeypatch):
  seen = []
  monkeypatch.setitem(sys.modules, "benchmarks.report",
                      types.SimpleNamespace(main=lambda argv: seen.append(argv) or 0))
  assert bench_run.main(["--report", "a.json", "--only", "x"]) == 0
  assert seen == [["a.json", "--only", "x"]]
  with pytest.raises(SystemExit):  # --report takes no runner options before it
    bench_run.main(["--quick", "--report", "a.json"])
