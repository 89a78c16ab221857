"""SAC learner throughput: rrd_jax's fused-scan learner vs PyTorch SAC, eager and compiled.

python -m benchmarks.sac [--quick] [--out RESULT.json]

Both run Hopper-v5-sized SAC (11-d observations, 3-d actions; twin critics and actor MLP 256-256,
batch 256, Adam 3e-4) on the same machine, one process, side by side. The JAX learner runs
`updates_per_call` updates per jitted lax.scan call with batches drawn inside jit from the device
replay buffer (rrd_jax.rl.learner, reward.kind dense = plain SAC). PyTorch (benchmarks/torch_sac.py;
on a GPU when JAX runs on one and PyTorch sees one, else on the CPU) runs the same number of
updates in each of these forms, each from the same seed:
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
"""

import json
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

from benchmarks import common

OBS, ACT = 11, 3
CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "mujoco_rrd_sac.py")


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


def _jax_learner(kind, updates_per_call):
  from rrd_jax.rl import learner, sac  # pylint: disable=import-outside-toplevel
  config = _config(**{"reward.kind": kind})
  hp = sac.SACParams.from_config(config.sac, ACT)
  state = learner.create_members(config, hp, OBS, [0])
  train = learner.make_train_steps(config, hp, (kind,), updates_per_call)
  kind_ids = jax.numpy.zeros(1, jax.numpy.int32)
  return state, lambda s, buffers: train(s, buffers, kind_ids)


def _time_jax(state, train, buffer):
  start = time.perf_counter()
  state, metrics = train(state, buffer)
  jax.block_until_ready(metrics)
  return state, time.perf_counter() - start


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
  return f"{type(e).__name__}: {e}"[:600]


def _log(message):
  print(f"[sac] {message}", file=sys.stderr, flush=True)


def _compile_counts():
  from torch._dynamo.utils import counters  # pylint: disable=import-outside-toplevel
  return {"graphs": counters["stats"]["unique_graphs"],
          "graph_breaks": sum(counters["graph_break"].values()),
          "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


class _TorchRunner:
  """One PyTorch form at one intra-op thread count: its own agent (seed 0) and step()."""

  def __init__(self, form, threads, device, arrays, quick):
    import torch  # pylint: disable=import-outside-toplevel
    from benchmarks import torch_sac  # pylint: disable=import-outside-toplevel
    self.form, self.threads, self.info = form, threads, {}
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    agent = torch_sac.TorchSAC(OBS, ACT, device=device, capturable=form == "cudagraph_capture")
    if form == "eager":
      replay = torch_sac.NumpyReplay(*arrays, device=device)
    else:
      replay = torch_sac.DeviceReplay(*arrays, device=device)
    step = torch_sac.make_step(agent, replay, 256)
    compiled = form in ("compile", "compile_cudagraphs")
    if form == "compile":
      mode = "max-autotune-no-cudagraphs" if device == "cuda" and not quick else None
      step = torch_sac.compile_step(step, mode)
      self.info["mode"] = mode or "default"
    elif form == "compile_cudagraphs":
      compiled_step = torch_sac.compile_step(step, "reduce-overhead")
      self.info["mode"] = "reduce-overhead"

      def marked_step():
        torch.compiler.cudagraph_mark_step_begin()  # one training step per call
        return compiled_step()
      step = marked_step
    self.sync = lambda losses: float(losses[0])  # waits for the device
    before = _compile_counts()
    compiler_config = getattr(torch.compiler, "config", None)  # torch >= 2.6
    saved_cache_flag = getattr(compiler_config, "force_disable_caches", None)
    if saved_cache_flag is not None:
      compiler_config.force_disable_caches = True  # a cold compile, whatever ran before
    if compiled:
      self.info["cold_compile"] = saved_cache_flag is not None  # inductor's caches were off
    start = time.perf_counter()
    try:
      if form == "cudagraph_capture":  # the warm-up updates run inside, before the capture
        step = torch_sac.cuda_graph_step(step, warmup=TORCH_WARMUP_UPDATES)
        self.sync(step())
      else:
        for _ in range(TORCH_WARMUP_UPDATES):
          self.sync(step())
    finally:
      if saved_cache_flag is not None:
        compiler_config.force_disable_caches = saved_cache_flag
    warmup_s = time.perf_counter() - start
    if compiled:
      after = _compile_counts()
      self.info.update(compile_s=round(warmup_s, 2),
                       **{k: after[k] - before[k] for k in ("graphs", "graph_breaks")})
      if form == "compile_cudagraphs":
        self.info["cudagraph_skips"] = after["cudagraph_skips"] - before["cudagraph_skips"]
    else:
      self.info["warmup_s"] = round(warmup_s, 3)
    self.step = step

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


def learner_throughput(quick):
  import torch  # pylint: disable=import-outside-toplevel
  updates_per_call, repeats = (50, 3) if quick else (100, 8)
  buffer, episodes = _filled_buffer(20_000)
  state, train = _jax_learner("dense", updates_per_call)
  rrd_state, rrd_train = _jax_learner("rrd", updates_per_call)
  cat = lambda name: np.concatenate([getattr(e, name) for e in episodes])  # noqa: E731
  arrays = tuple(cat(n) for n in ("observation", "action", "dense_reward", "next_observation",
                                  "terminal"))
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  default_threads = torch.get_num_threads()
  thread_settings = sorted({default_threads, 1})
  forms, details = _torch_forms(device)

  state, jax_first_call_s = _time_jax(state, train, buffer)  # compile + warm-up
  rrd_state, _ = _time_jax(rrd_state, rrd_train, buffer)
  _log(f"JAX learners compiled (first call {jax_first_call_s:.1f} s)")
  runners = []
  for form in forms:
    details[form] = {"data": TORCH_DATA[form], "by_threads": {}}
    # On a GPU the device-resident forms do no host work per update: one thread count suffices.
    for threads in (thread_settings if device == "cpu" or form == "eager" else [default_threads]):
      try:
        runner = _TorchRunner(form, threads, device, arrays, quick)
      except Exception as e:  # pylint: disable=broad-except
        import traceback  # pylint: disable=import-outside-toplevel
        traceback.print_exc()
        details[form]["by_threads"][str(threads)] = {"error": _error_text(e)}
        continue
      details[form]["by_threads"][str(threads)] = dict(runner.info)
      runners.append(runner)
      _log(f"torch {form} at {threads} thread(s) ready: {runner.info}")
  jax_times, rrd_times = [], []
  torch_times = {id(r): [] for r in runners}
  for _ in range(repeats):
    state, elapsed = _time_jax(state, train, buffer)
    jax_times.append(elapsed)
    for runner in list(runners):  # each form at its best thread count counts (oversubscribed
      time.sleep(0.05)             # intra-op threads can be far slower on a busy machine)
      try:
        torch_times[id(runner)].append(runner.call(updates_per_call))
      except Exception as e:  # pylint: disable=broad-except
        details[runner.form]["by_threads"][str(runner.threads)]["error"] = _error_text(e)
        runners.remove(runner)
    time.sleep(0.05)
    rrd_state, elapsed = _time_jax(rrd_state, rrd_train, buffer)
    rrd_times.append(elapsed)
    _log(f"repeat {len(jax_times)}/{repeats} done")
  torch.set_num_threads(default_threads)

  jax_rate = updates_per_call / statistics.median(jax_times)
  result = {"updates_per_call": updates_per_call, "repeats": repeats,
            "torch_version": torch.__version__, "torch_device": device,
            "jax_backend": jax.default_backend(),
            "jax_updates_per_s": round(jax_rate, 1), "jax_first_call_s": round(jax_first_call_s, 2)}
  rates = {}
  for runner in runners:
    rate = updates_per_call / statistics.median(torch_times[id(runner)])
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
  result["torch_forms"] = details

  def rate_of(form):
    return rates[form][0] if form in rates else None

  for form in ("eager", "eager_device", "compile"):
    rate = rate_of(form)
    result[f"torch_{form}_updates_per_s"] = round(rate, 1) if rate else None
    result[f"speedup_vs_{form}"] = round(jax_rate / rate, 2) if rate else None
  result["torch_eager_threads"] = rates["eager"][1].threads if "eager" in rates else None
  result["torch_compile_s"] = rates["compile"][1].info.get("compile_s") if "compile" in rates \
      else None
  if device == "cuda":
    graph_rates = {f: rate_of(f) for f in CUDA_GRAPH_FORMS if rate_of(f)}
    best = max(graph_rates, key=graph_rates.get) if graph_rates else None
    result["torch_cudagraphs_form"] = best
    result["torch_cudagraphs_updates_per_s"] = round(graph_rates[best], 1) if best else None
    result["speedup_vs_cudagraphs"] = round(jax_rate / graph_rates[best], 2) if best else None
  result["jax_rrd_sac_updates_per_s"] = round(updates_per_call / statistics.median(rrd_times), 1)
  return result


def loop_throughput(quick):
  """env_steps_per_s of the agent loop on Hopper-v5 RRD-SAC, after its warm-up."""
  from rrd_jax.rl import agent_loop  # pylint: disable=import-outside-toplevel
  warmup, steps = (500, 1500) if quick else (1000, 5000)
  config = _config(**{"train.total_env_steps": steps, "train.warmup_steps": warmup,
                      "train.log_every_steps": 500, "eval.every_steps": steps,
                      "eval.episodes": 1, "checkpoint.every_steps": 0,
                      "checkpoint.save_final": False, "replay.capacity": 100_000})
  with tempfile.TemporaryDirectory() as workdir:
    agent_loop.train_and_evaluate(config, workdir, log=lambda *_: None)
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
      rows = [json.loads(line) for line in f]
  rates = [r["train/env_steps_per_s"] for r in rows
           if "train/env_steps_per_s" in r and r["step"] > warmup + 500]  # compiled, past warm-up
  return {"env": "Hopper-v5", "reward_kind": "rrd", "env_steps": steps, "warmup_steps": warmup,
          "env_steps_per_s": round(statistics.median(rates), 1) if rates else None}


def run(quick=False):
  result = learner_throughput(quick)
  _log("learner throughput done; the online loop next")
  result["loop"] = loop_throughput(quick)
  result["env_steps_per_s"] = result["loop"]["env_steps_per_s"]
  return result


def main():
  common.benchmark_main("sac", run, __doc__)


if __name__ == "__main__":
  main()
