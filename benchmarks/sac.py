"""SAC learner throughput: rrd_jax's fused-scan learner vs PyTorch SAC, eager and compiled.

python -m benchmarks.sac [--quick | --smoke] [--out RESULT.json]

Both run Hopper-v5-sized SAC (11-d observations, 3-d actions; twin critics and actor MLP 256-256,
batch 256, Adam 3e-4) on the same machine, one process, side by side. The JAX learner runs
`updates_per_call` updates per jitted lax.scan call with batches drawn inside jit from the device
replay buffer (rrd_jax.rl.learner, reward.kind dense = plain SAC). PyTorch
(benchmarks/torch_ports/torch_sac.py; on a GPU when JAX runs on one and PyTorch sees one, else on
the CPU) runs the same number of updates in each of these forms, each from the same seed:
  eager                 EAGER PyTorch with a NumPy replay: indices drawn by NumPy on the host and
                        the batch copied to the device per update (a straightforward PyTorch SAC;
                        this is the form the earlier `torch_updates_per_s` / `speedup` measured).
  eager_device          eager PyTorch, replay on the device as torch tensors, sampled there by
                        torch.randint (no host round trip per update).
  compile               eager_device's sampling plus the whole update (losses, backward passes,
                        three Adam steps, polyak) under torch.compile: mode default on a CPU,
                        "max-autotune-no-cudagraphs" on a GPU (default with --quick). Dynamo breaks
                        the graph at each backward() and around each optimizer step (PyTorch's own
                        design); graphs / graph_breaks are recorded.
  compile_cudagraphs    GPU only: torch.compile(mode="reduce-overhead") (CUDA graph trees; inductor's
                        cudagraph_skips are recorded).
  cudagraph_capture     GPU only: the whole eager step (sampling, update, capturable Adam) captured
                        once with torch.cuda.graph and replayed.
The CUDA-graph forms, and any form that fails, record {"error": ...} instead of stopping the
benchmark; on a CPU they record {"skipped": ...}. On a CPU each form runs at PyTorch's default
intra-op thread count and at 1 thread (the faster counts; inductor bakes the thread count into its
C++ kernels, so the compiled form is compiled once per thread count); on a GPU the device-resident
forms run at the default count only. Compilation is timed apart from the steady state: compile_s is
the wall time of the warm-up updates (3; the first compiles, later ones may recompile), with
inductor's on-disk caches off so it is a cold compile; jax_first_call_s is the JAX learner's first
call (its compilation included). Calls alternate (JAX, each PyTorch form, ...; warm-up excluded);
medians give jax_updates_per_s, torch_<form>_updates_per_s and speedup_vs_<form> = JAX / PyTorch
(speedup_vs_eager, speedup_vs_eager_device, speedup_vs_compile, and on a GPU speedup_vs_cudagraphs
against the faster CUDA-graph form); `torch_forms` holds every form's details.
Also: RRD-SAC updates/s (one RRD reward-model update + one SAC update per step) and env_steps_per_s
of the whole online loop (a short Hopper RRD-SAC run through rrd_jax.rl.agent_loop, past its
warm-up, one update per env step).
--quick: 3 repeats of 50 updates per call; --smoke: 1 repeat of 2 updates, one thread count,
inductor's caches on, a 400-step loop. Without torch the PyTorch figures are None (torch_skipped
says why) and the JAX learners and the loop still run.
"""

import dataclasses
import os
import statistics
import sys
import tempfile
import time
import traceback

import jax
import numpy as np

from benchmarks import common

OBS, ACT = 11, 3
CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "mujoco_rrd_sac.py")


@dataclasses.dataclass(frozen=True)
class Plan:
  updates_per_call: int
  repeats: int
  transitions: int  # in the replay buffer both sides sample
  loop_warmup: int  # the online loop's warm-up and total env steps, and its logging interval
  loop_steps: int
  loop_log_every: int
  cold_compile: bool = True  # torch.compile with inductor's on-disk caches off
  all_thread_counts: bool = True  # on a CPU, each PyTorch form at the default count and at 1
  gpu_compile_mode: str = None  # torch.compile's mode on a GPU (None: its default)


PLANS = {"full": Plan(100, 8, 20_000, 1000, 5000, 500,
                     gpu_compile_mode="max-autotune-no-cudagraphs"),
         "quick": Plan(50, 3, 20_000, 500, 1500, 500),
         # --smoke: seconds, once inductor's cache holds the compiled update
         "smoke": Plan(2, 1, 2_000, 100, 400, 100, cold_compile=False, all_thread_counts=False)}


def _config(**overrides):
  from rrd_jax.config import loading  # pylint: disable=import-outside-toplevel
  return loading.load_config(CONFIG_FILE, "hopper", overrides)


def _filled_buffer(num_transitions, episode_length=100, seed=0):
  from rrd_jax.rl import envs, population, replay  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  episodes = []
  for _ in range(num_transitions // episode_length):
    obs = rng.normal(size=(episode_length + 1, OBS)).astype(np.float32)
    dense = rng.normal(size=episode_length).astype(np.float32)
    delayed = np.zeros(episode_length, np.float32)
    delayed[-1] = dense.sum()
    episodes.append(envs.Episode(obs[:-1], rng.uniform(-1, 1, (episode_length, ACT)).astype(
        np.float32), obs[1:], delayed, dense, np.zeros(episode_length, np.float32)))
  buffer = replay.create(num_transitions, OBS, ACT)
  insert = jax.jit(replay.insert, donate_argnums=(0,))
  for block in replay.episodes_to_rows(episodes):
    buffer = insert(buffer, block)
  return population.stack([buffer]), episodes  # the learner trains a population (of one)


class _JaxLearner:
  """A population of one on the device replay `buffer`: call() runs updates_per_call updates."""

  def __init__(self, kind, updates_per_call, buffer):
    from rrd_jax.rl import learner, sac  # pylint: disable=import-outside-toplevel
    config = _config(**{"reward.kind": kind})
    hp = sac.SACParams.from_config(config.sac, ACT)
    self.state = learner.create_members(config, hp, OBS, [0])
    self.train = learner.make_train_steps(config, hp, (kind,), updates_per_call)
    self.kind_ids = jax.numpy.zeros(1, jax.numpy.int32)
    self.buffer = buffer

  def call(self):
    """Seconds of one call (the first includes its compilation)."""
    start = time.perf_counter()
    self.state, metrics = self.train(self.state, self.buffer, self.kind_ids)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start


TORCH_FORMS = ("eager", "eager_device", "compile", "compile_cudagraphs", "cudagraph_capture")
TORCH_DATA = {
    "eager": "NumPy replay on the host; NumPy indices, batch copied to the device per update",
    "eager_device": "torch replay on the device; torch.randint indices, gathered there",
    "compile": "torch replay on the device; sampling and update under torch.compile",
    "compile_cudagraphs": "torch replay on the device; torch.compile(mode='reduce-overhead')",
    "cudagraph_capture": "torch replay on the device; whole step captured by torch.cuda.graph",
}
CUDA_GRAPH_FORMS = ("compile_cudagraphs", "cudagraph_capture")
TORCH_WARMUP_UPDATES = 3


def _error_text(e):
  return common.error_text(e)[:600]


def _log(message):
  print(f"[sac] {message}", file=sys.stderr, flush=True)


def _compile_counts():
  from torch._dynamo.utils import counters  # pylint: disable=import-outside-toplevel
  return {"graphs": counters["stats"]["unique_graphs"],
          "graph_breaks": sum(counters["graph_break"].values()),
          "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


def _torch_step(form, device, arrays, plan, info):
  """step() -> losses of one PyTorch form (its own agent, seed 0); compile modes go in info."""
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks.torch_ports import torch_sac  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  agent = torch_sac.TorchSAC(OBS, ACT, device=device, capturable=form == "cudagraph_capture")
  replay = (torch_sac.NumpyReplay if form == "eager" else torch_sac.DeviceReplay)(
      *arrays, device=device)
  step = torch_sac.make_step(agent, replay, 256)
  if form == "compile":
    mode = plan.gpu_compile_mode if device == "cuda" else None
    info["mode"] = mode or "default"
    return torch_sac.compile_step(step, mode)
  if form == "compile_cudagraphs":
    compiled_step = torch_sac.compile_step(step, "reduce-overhead")
    info["mode"] = "reduce-overhead"

    def marked_step():
      torch.compiler.cudagraph_mark_step_begin()  # one training step per call
      return compiled_step()
    return marked_step
  return step


class _TorchRunner:
  """One PyTorch form at one intra-op thread count: its own agent (seed 0) and step()."""

  def __init__(self, form, threads, device, arrays, plan):
    import torch  # pylint: disable=import-outside-toplevel
    from benchmarks.torch_ports import torch_sac  # pylint: disable=import-outside-toplevel
    self.form, self.threads, self.info = form, threads, {}
    torch.set_num_threads(threads)
    step = _torch_step(form, device, arrays, plan, self.info)
    compiled = form in ("compile", "compile_cudagraphs")
    self.sync = lambda losses: float(losses[0])  # waits for the device
    before = _compile_counts()
    compiler_config = getattr(torch.compiler, "config", None)  # torch >= 2.6
    saved_cache_flag = getattr(compiler_config, "force_disable_caches", None)
    cold = saved_cache_flag is not None and plan.cold_compile
    if cold:
      compiler_config.force_disable_caches = True  # a cold compile, whatever ran before
    if compiled:
      self.info["cold_compile"] = cold  # inductor's caches were off
    start = time.perf_counter()
    try:
      if form == "cudagraph_capture":  # the warm-up updates run inside, before the capture
        step = torch_sac.cuda_graph_step(step, warmup=TORCH_WARMUP_UPDATES)
        self.sync(step())
      else:
        for _ in range(TORCH_WARMUP_UPDATES):
          self.sync(step())
    finally:
      if cold:
        compiler_config.force_disable_caches = saved_cache_flag
    self._record_warmup(time.perf_counter() - start, compiled, before)
    self.step = step

  def _record_warmup(self, warmup_s, compiled, before):
    if not compiled:
      self.info["warmup_s"] = round(warmup_s, 3)
      return
    after = _compile_counts()
    self.info.update(compile_s=round(warmup_s, 2),
                     **{k: after[k] - before[k] for k in ("graphs", "graph_breaks")})
    if self.form == "compile_cudagraphs":
      self.info["cudagraph_skips"] = after["cudagraph_skips"] - before["cudagraph_skips"]

  def call(self, updates):
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(self.threads)
    start = time.perf_counter()
    for _ in range(updates):
      losses = self.step()
    self.sync(losses)
    return time.perf_counter() - start


def _torch_forms(device):
  """The forms to run on `device`, and {form: {"skipped": why}} for the others."""
  if device == "cuda":
    return list(TORCH_FORMS), {}
  return ([f for f in TORCH_FORMS if f not in CUDA_GRAPH_FORMS],
          {f: {"skipped": "CUDA graphs need a GPU (torch.cuda.is_available() is False or JAX "
                          "is not on a GPU)"} for f in CUDA_GRAPH_FORMS})


def _torch_device():
  import torch  # pylint: disable=import-outside-toplevel
  return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def _torch_runners(arrays, plan):
  """([_TorchRunner] that could be built, {form: details}, default thread count)."""
  import torch  # pylint: disable=import-outside-toplevel
  device = _torch_device()
  default_threads = torch.get_num_threads()
  thread_settings = sorted({default_threads, 1}) if plan.all_thread_counts else [default_threads]
  forms, details = _torch_forms(device)
  runners = []
  for form in forms:
    details[form] = {"data": TORCH_DATA[form], "by_threads": {}}
    # On a GPU the device-resident forms do no host work per update: one thread count suffices.
    for threads in (thread_settings if device == "cpu" or form == "eager" else [default_threads]):
      try:
        runner = _TorchRunner(form, threads, device, arrays, plan)
      except Exception as e:  # pylint: disable=broad-except
        traceback.print_exc()
        details[form]["by_threads"][str(threads)] = {"error": _error_text(e)}
        continue
      details[form]["by_threads"][str(threads)] = dict(runner.info)
      runners.append(runner)
      _log(f"torch {form} at {threads} thread(s) ready: {runner.info}")
  return runners, details, default_threads


def _timed_repeats(learners, runners, details, plan):
  """{"jax": [...], "rrd": [...], id(runner): [...]}: seconds per call, in turn (JAX, each
  PyTorch form, RRD-SAC), plan.repeats times; a runner that raises is dropped."""
  times = {"jax": [], "rrd": [], **{id(r): [] for r in runners}}
  for repeat in range(plan.repeats):
    times["jax"].append(learners["jax"].call())
    for runner in list(runners):  # each form at its best thread count counts (oversubscribed
      time.sleep(0.05)             # intra-op threads can be far slower on a busy machine)
      try:
        times[id(runner)].append(runner.call(plan.updates_per_call))
      except Exception as e:  # pylint: disable=broad-except
        details[runner.form]["by_threads"][str(runner.threads)]["error"] = _error_text(e)
        runners.remove(runner)
    time.sleep(0.05)
    times["rrd"].append(learners["rrd"].call())
    _log(f"repeat {repeat + 1}/{plan.repeats} done")
  return times


def _best_rates(runners, times, details, forms, updates_per_call):
  """{form: (updates/s, runner)} at each form's fastest thread count; details filled in."""
  rates = {}
  for runner in runners:
    rate = updates_per_call / statistics.median(times[id(runner)])
    details[runner.form]["by_threads"][str(runner.threads)]["updates_per_s"] = round(rate, 1)
    if rate > rates.get(runner.form, (0, None))[0]:
      rates[runner.form] = (rate, runner)
  for form in forms:
    if form in rates:
      rate, runner = rates[form]
      details[form].update(updates_per_s=round(rate, 1), threads=runner.threads, **runner.info)
    else:
      errors = [v.get("error") for v in details[form]["by_threads"].values()]
      details[form]["error"] = next((e for e in errors if e), "no timing")
  return rates


def _torch_figures(jax_rate, rates, device):
  """The torch_<form>_updates_per_s / speedup_vs_<form> figures (None for a missing form)."""
  rate_of = lambda form: rates[form][0] if form in rates else None  # noqa: E731
  out = {}
  for form in ("eager", "eager_device", "compile"):
    rate = rate_of(form)
    out[f"torch_{form}_updates_per_s"] = round(rate, 1) if rate else None
    out[f"speedup_vs_{form}"] = round(jax_rate / rate, 2) if rate else None
  out["torch_eager_threads"] = rates["eager"][1].threads if "eager" in rates else None
  out["torch_compile_s"] = rates["compile"][1].info.get("compile_s") if "compile" in rates \
      else None
  if device == "cuda":
    graph_rates = {f: rate_of(f) for f in CUDA_GRAPH_FORMS if rate_of(f)}
    best = max(graph_rates, key=graph_rates.get) if graph_rates else None
    out["torch_cudagraphs_form"] = best
    out["torch_cudagraphs_updates_per_s"] = round(graph_rates[best], 1) if best else None
    out["speedup_vs_cudagraphs"] = round(jax_rate / graph_rates[best], 2) if best else None
  return out


def _without_torch():
  """The PyTorch figures' keys, None, when torch is not installed."""
  figures = {f"{prefix}{form}{suffix}": None for form in ("eager", "eager_device", "compile")
             for prefix, suffix in (("torch_", "_updates_per_s"), ("speedup_vs_", ""))}
  return dict(figures, torch_eager_threads=None, torch_compile_s=None, torch_version=None,
              torch_device=None,
              torch_skipped="torch not installed (pip install -r benchmarks/requirements.txt)")


def learner_throughput(plan):
  buffer, episodes = _filled_buffer(plan.transitions)
  learners = {kind: _JaxLearner("dense" if kind == "jax" else "rrd", plan.updates_per_call,
                                buffer) for kind in ("jax", "rrd")}
  jax_first_call_s = learners["jax"].call()  # compile + warm-up
  learners["rrd"].call()
  _log(f"JAX learners compiled (first call {jax_first_call_s:.1f} s)")
  runners, details, forms, device = [], {}, [], None
  if common.has_module("torch"):
    import torch  # pylint: disable=import-outside-toplevel
    cat = lambda name: np.concatenate([getattr(e, name) for e in episodes])  # noqa: E731
    arrays = tuple(cat(n) for n in ("observation", "action", "dense_reward", "next_observation",
                                    "terminal"))
    runners, details, default_threads = _torch_runners(arrays, plan)
    device, forms = _torch_device(), [f for f in details if "skipped" not in details[f]]
  times = _timed_repeats(learners, runners, details, plan)
  jax_rate = plan.updates_per_call / statistics.median(times["jax"])
  result = {"updates_per_call": plan.updates_per_call, "repeats": plan.repeats,
            "jax_backend": jax.default_backend(),
            "jax_updates_per_s": round(jax_rate, 1), "jax_first_call_s": round(jax_first_call_s, 2)}
  if device is None:
    result.update(_without_torch())
  else:
    torch.set_num_threads(default_threads)
    rates = _best_rates(runners, times, details, forms, plan.updates_per_call)
    result.update(torch_version=torch.__version__, torch_device=device, torch_forms=details,
                  **_torch_figures(jax_rate, rates, device))
  result["jax_rrd_sac_updates_per_s"] = round(
      plan.updates_per_call / statistics.median(times["rrd"]), 1)
  return result


def loop_throughput(plan):
  """env_steps_per_s of the agent loop on Hopper-v5 RRD-SAC, after its warm-up."""
  from rrd_jax.rl import agent_loop  # pylint: disable=import-outside-toplevel
  warmup, steps = plan.loop_warmup, plan.loop_steps
  config = _config(**{"train.total_env_steps": steps, "train.warmup_steps": warmup,
                      "train.log_every_steps": plan.loop_log_every, "eval.every_steps": steps,
                      "eval.episodes": 1, "checkpoint.every_steps": 0,
                      "checkpoint.save_final": False, "replay.capacity": 100_000})
  with tempfile.TemporaryDirectory() as workdir:
    agent_loop.train_and_evaluate(config, workdir, log=lambda *_: None)
    rows = common.read_metrics(workdir)
  rates = [r["train/env_steps_per_s"] for r in rows  # compiled, past the warm-up
           if "train/env_steps_per_s" in r and r["step"] > warmup + plan.loop_log_every]
  return {"env": "Hopper-v5", "reward_kind": "rrd", "env_steps": steps, "warmup_steps": warmup,
          "env_steps_per_s": round(statistics.median(rates), 1) if rates else None}


def run(size="full"):
  plan = PLANS[common.size_name(size)]
  result = learner_throughput(plan)
  _log("learner throughput done; the online loop next")
  result["loop"] = loop_throughput(plan)
  result["env_steps_per_s"] = result["loop"]["env_steps_per_s"]
  return result


def main():
  common.benchmark_main("sac", run, __doc__)


if __name__ == "__main__":
  main()
