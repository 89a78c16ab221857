"""The reward model on one accelerator, in one call (issue 16): the train step against PyTorch,
the sharded device cache, the tf.data stream and the seed command end to end.

python -m benchmarks.accelerator [--quick] [--out RESULT.json]
python -m benchmarks.run --only accelerator [--quick] [--out RESULT.json]

Parts, run in this order; each is wrapped (one that fails records {"error": ...} and the others
still run), the JSON is rewritten after every part and shape (a run cut short keeps what it had),
progress lines go to stderr, and a part that the time budget (7.5 min; --quick 2.8 min) no longer
covers records {"skipped": ...}:
  (a) step: the jitted reward train step (benchmarks/reward_step.py's jax_setup, no augmentation)
      in float32 and bfloat16 (model.dtype) against the PyTorch port (benchmarks/torch_reference.py)
      eager and under torch.compile, same initial parameters, same device (a GPU: CUDA for torch),
      each batch already on the device. Shapes: the seed command's 1 episode x 32 steps at 256^2
      and a throughput shape, 32 x 32 at 128^2 (--quick: 1 x 8 and 4 x 8 at 64^2). Steps are timed
      in blocks of back-to-back steps with one synchronisation per block, the four variants
      interleaved block by block, medians reported. Figures per shape: steps_per_s and
      frames_per_s of each variant, first_call_s (compilation included), speedup_vs_eager and
      speedup_vs_compile for float32 and bfloat16, and the loss / gradient equivalence of the port
      (reward_step.check_equivalence in float32 at "highest" matmul precision; --quick: at the
      second shape only). The timed float32 steps run at both sides' TF32 settings on a GPU
      (JAX's DEFAULT precision; torch with float32_matmul_precision "high"), recorded under torch.
  (b) device_cache: data.cache=device (split over every device: rrd_jax/data/cache.py shard_plan,
      DeviceCache) on a generated LIBERO-10-sized dataset (379 episodes of 134-401 steps, about
      101k frames, main + wrist cameras, model.use_wrist) at 128^2 (--quick: 30 short episodes at
      64^2); 32 x 32 batches. The generator (tfds, one process, one core) runs in a child process
      while part a runs. It made about 290 frames/s at 256^2 on a busy 2-core EPYC (6 min for
      101k frames, over the call's budget) and about 1,000 at 128^2 (under 2 min). Figures:
      generation seconds and the generator's frames/s, cache_build_s, cache_steps_per_s against
      ceiling_steps_per_s (the same scanned update on one fixed device-resident batch) and
      fraction_of_ceiling, measured as benchmarks/device_cache.py does (no augmentation).
      frames_source says where the frames came from: "rlds" (the generated dataset, as above), or
      without tensorflow "rendered in memory (no tensorflow)": the same generator's numpy code
      (rrd_jax/data/scenes.py generate_episode, which needs no TensorFlow) renders the same
      episodes (no JPEG round trip) in spawned processes (dataset.generation_s and
      generator_frames_per_s are then the rendering's), and the real cache.DeviceCache places
      them on the devices through a stand-in loader (RenderedLoader, with EpisodeLoader's
      step_batches): same shard plan, padding, sampling law and step.
      cache_build_s is then the concatenation, padding and transfer, with no decoding.
  (c) stream: data.cache=none through tf.data with all the host's cores: delivered frames/s (the
      dataset alone), consumed frames/s (the step alone) and, training from the stream as train.py
      does, frames/s and the data-wait fraction; at the seed shape (on LIBERO-length episodes
      stored at 256^2) and at the throughput shape (on part b's dataset).
  (d) seed_command: `python -m rrd_jax.cli.pytorch_flags` with the seed command's flags (500 updates,
      --libero_image_size 256) on part b's dataset: wall seconds, streaming; the legacy CLI has no
      cache flag, so the device-cached run is its equivalent `python -m rrd_jax.cli.train` command
      (pytorch_flags.translate's overrides) plus --config.data.cache=device. --quick: 10 updates at 64^2.

Parts c and d need tensorflow and tensorflow_datasets and record {"skipped": ...} without them;
parts a and b need neither (jax, flax, optax, chex, ml_collections; torch for a's torch sides,
which record {"skipped": "torch not installed"} without it).

On a GPU machine, from the repository root, one line (CUDA builds as in
benchmarks/requirements.txt; the JSON and the log land in $OUT):
  pip install -r requirements.txt pillow==13.0.0 "jax[cuda12]==0.10.2" && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126 && PYTHONUNBUFFERED=1 python -m benchmarks.accelerator --out "$OUT/accelerator.json" 2>&1 | tee "$OUT/accelerator.log"
"""

import dataclasses
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types

# Part d trains in child processes on the same GPU: this process must not hold 75% of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from benchmarks import common, reward_step  # pylint: disable=wrong-import-position
from rrd_jax.run import parallel  # pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = "~/.cache/rrd_jax/bench"
LIBERO10_LENGTHS = (134, 401)  # uniform: mean 267.5 x 379 episodes = LIBERO-10's ~101k frames
STEP_VARIANTS = ("jax_float32", "jax_bfloat16", "torch_eager", "torch_compile")
TRAIN_KEYS = ("true_reward", "episode_return", "episode_length")
HOST_COPIES = 2.5  # a shard's decoded chunks and their concatenation pass through host memory


@dataclasses.dataclass(frozen=True)
class Plan:
  """Sizes of one run (FULL: one GPU in <= 8 minutes; QUICK: a 2-core CPU in <= 3)."""
  step_shapes: tuple  # (name, episodes B, steps K, image size)
  step_block_s: float  # seconds of one timed block of back-to-back steps
  step_blocks: int  # blocks per variant (medians over them)
  equivalence_shapes: tuple  # names of the step shapes where the port's equivalence is checked
  cache_episodes: int
  cache_lengths: tuple  # (min, max) episode length
  cache_image_size: int
  cache_batch: tuple  # (B, K)
  cache_chunk: int  # steps per scanned call
  cache_repeats: int
  stream_shapes: tuple  # (name, B, K, image size, dataset: "seed" (256^2 stored) or "cache")
  seed_stream_episodes: int  # episodes of the 256^2 dataset for the seed-shape stream
  stream_block_s: float
  stream_rounds: int
  seed_epochs: int  # the seed command's --epochs x --cycles updates
  seed_cycles: int
  seed_image_size: int
  budget_s: float  # seconds for the whole run
  generate_in_background: bool  # parts b and c's datasets generated in child processes during a
  # A part, step/stream shape or seed-command run starts only with at least this much left.
  part_min_s: dict = dataclasses.field(default_factory=dict)
  bench_dir: str = BENCH_DIR  # where generated datasets stay (reused by later runs)


FULL = Plan(
    step_shapes=(("seed_1x32_256px", 1, 32, 256), ("throughput_32x32_128px", 32, 32, 128)),
    step_block_s=0.4, step_blocks=4,
    equivalence_shapes=("seed_1x32_256px", "throughput_32x32_128px"),
    cache_episodes=379, cache_lengths=LIBERO10_LENGTHS, cache_image_size=128, cache_batch=(32, 32),
    cache_chunk=50, cache_repeats=5,
    stream_shapes=(("seed_1x32_256px", 1, 32, 256, "seed"),
                   ("throughput_32x32_128px", 32, 32, 128, "cache")),
    seed_stream_episodes=16, stream_block_s=0.7, stream_rounds=3,
    seed_epochs=10, seed_cycles=50, seed_image_size=256, budget_s=450.0,
    generate_in_background=True,
    part_min_s={"step": 0, "step_shape": 30, "device_cache": 120, "stream": 40,
                "stream_shape": 20, "seed_command": 60, "seed_run": 40})
QUICK = Plan(
    step_shapes=(("seed_like_1x8_64px", 1, 8, 64), ("throughput_like_4x8_64px", 4, 8, 64)),
    step_block_s=0.15, step_blocks=3, equivalence_shapes=("throughput_like_4x8_64px",),
    cache_episodes=30, cache_lengths=(40, 120), cache_image_size=64, cache_batch=(4, 8),
    cache_chunk=10, cache_repeats=3,
    stream_shapes=(("seed_like_1x8_64px", 1, 8, 64, "cache"),
                   ("throughput_like_4x8_64px", 4, 8, 64, "cache")),
    seed_stream_episodes=0, stream_block_s=0.3, stream_rounds=2,
    seed_epochs=2, seed_cycles=5, seed_image_size=64, budget_s=170.0,
    generate_in_background=False,
    part_min_s={"step": 0, "step_shape": 10, "device_cache": 30, "stream": 15,
                "stream_shape": 8, "seed_command": 25, "seed_run": 12})


def log(message):
  print(f"[accelerator] {message}", file=sys.stderr, flush=True)


def error_text(e):
  return f"{type(e).__name__}: {e}"


def guarded(out, key, fn):
  """out[key] = fn(), or {"error": ...} when it raises (the traceback goes to stderr)."""
  try:
    out[key] = fn()
  except Exception as e:  # pylint: disable=broad-except  (one failure must not lose the rest)
    traceback.print_exc()
    log(f"{key} failed: {error_text(e)}")
    out[key] = {"error": error_text(e)}
  return out[key]


def has_module(name):
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


def median_rate(rates):
  return float(statistics.median(rates)) if rates else None


def ratio(a, b):
  return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def block_count(seconds_per_step, block_s, most=2000):
  """Steps in a timed block of about block_s seconds."""
  return int(min(most, max(1, round(block_s / max(seconds_per_step, 1e-9)))))


# --- (a) the train step --------------------------------------------------------------------------


class Runner:
  """One variant of the train step: step() dispatches, sync() waits for the device."""

  def __init__(self, step, sync):
    self.step, self.sync, self.steps_per_block = step, sync, 1
    start = time.perf_counter()
    step()
    sync()
    self.first_call_s = time.perf_counter() - start  # compilation included

  def calibrate(self, block_s):
    for _ in range(2):
      self.step()
    self.sync()
    start = time.perf_counter()
    for _ in range(3):
      self.step()
    self.sync()
    self.steps_per_block = block_count((time.perf_counter() - start) / 3, block_s)

  def block_rate(self):
    start = time.perf_counter()
    for _ in range(self.steps_per_block):
      self.step()
    self.sync()
    return self.steps_per_block / (time.perf_counter() - start)


def jax_device_batch(batch, input_keys, mesh):
  """The numpy batch's model inputs and targets as device arrays, split over the mesh."""
  device_batch = parallel.to_global({k: batch[k] for k in [*input_keys, *TRAIN_KEYS]},
                                    parallel.batch_sharding(mesh))
  return jax.block_until_ready(device_batch)


def torch_device_batch(batch, device):
  """The numpy batch as the torch tensors TorchTrainer reads, on `device`."""
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  return {k: v.to(device) for k, v in torch_reference.to_torch_batch(batch).items()}


def jax_runner(batch, image_size, dtype):
  """(Runner, model, params before any step) of the JAX step, its batch already on the device."""
  _, model, input_keys, state, train_step, mesh = reward_step.jax_setup(image_size, dtype)
  params = jax.device_get(state.params)
  device_batch = jax_device_batch(batch, input_keys, mesh)
  holder = {"state": state, "metrics": None}

  def step():
    holder["state"], holder["metrics"] = train_step(holder["state"], device_batch)

  return Runner(step, lambda: jax.block_until_ready(holder["metrics"])), model, params


def torch_device():
  """The device the PyTorch side runs on (the accelerator JAX uses), or None if torch has none."""
  import torch  # pylint: disable=import-outside-toplevel
  if jax.default_backend() == "gpu":
    return torch.device("cuda") if torch.cuda.is_available() else None
  return torch.device("cpu")


def torch_info():
  """torch's version, device and the float32 settings the timings ran with (sets TF32 on GPUs)."""
  if not has_module("torch"):
    return {"skipped": "torch not installed"}
  import torch  # pylint: disable=import-outside-toplevel
  device = torch_device()
  if device is None:
    return {"skipped": f"torch {torch.__version__} has no CUDA here, JAX runs on the GPU"}
  info = {"version": torch.__version__, "device": str(device), "threads": torch.get_num_threads()}
  if device.type == "cuda":
    torch.set_float32_matmul_precision("high")  # TF32, as JAX's DEFAULT precision on GPUs
    torch.backends.cudnn.allow_tf32 = True
    info.update(cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(device),
                float32_matmul_precision=torch.get_float32_matmul_precision(),
                cudnn_allow_tf32=torch.backends.cudnn.allow_tf32)
  return info


def torch_runner(batch, image_size, params, compiled):
  """Runner of the PyTorch port (eager or torch.compile): same params, batch on its device."""
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  device = torch_device()
  model = torch_reference.TorchRewardNet(image_size)
  torch_reference.load_jax_params(model, params)
  model.to(device)
  trainer = torch_reference.TorchTrainer(torch.compile(model) if compiled else model)
  device_batch = torch_device_batch(batch, device)
  sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
  return Runner(lambda: trainer.step(device_batch), sync)


def step_runners(batch, image_size, torch_status, out):
  """{variant: Runner} of the variants that could be set up (out[variant]: first-call seconds,
  or why it is missing), and the float32 JAX model and params (None if that one failed)."""
  runners, reference = {}, {}

  def setup(variant):
    if variant.startswith("jax_"):
      runner, model, params = jax_runner(batch, image_size, variant[4:])
      if variant == "jax_float32":
        reference.update(model=model, params=params)
    elif "skipped" in torch_status:
      return dict(torch_status)
    elif "params" not in reference:
      return {"skipped": "needs the JAX float32 parameters (jax_float32 failed)"}
    else:
      runner = torch_runner(batch, image_size, reference["params"], variant == "torch_compile")
    runners[variant] = runner
    return {"first_call_s": runner.first_call_s}

  for variant in STEP_VARIANTS:
    log(f"  {variant}: compiling and warming up")
    guarded(out, variant, lambda v=variant: setup(v))
  return runners, reference.get("model"), reference.get("params")


def interleaved_rates(runners, blocks, block_s, failures):
  """Median steps/s of each runner: calibrated, then timed block by block in turn. A runner that
  raises is dropped, its error in failures[variant]."""
  rates = {variant: [] for variant in runners}
  for round_index in range(blocks + 1):  # round 0 calibrates
    for variant, runner in list(runners.items()):
      try:
        if round_index == 0:
          runner.calibrate(block_s)
          continue
        time.sleep(reward_step.PAUSE_S)  # neither framework's spinning threads are timed
        rates[variant].append(runner.block_rate())
      except Exception as e:  # pylint: disable=broad-except  (the other variants go on)
        traceback.print_exc()
        failures[variant] = error_text(e)
        runners.pop(variant)
  return {variant: median_rate(rates[variant]) for variant in runners}


def step_figures(rates, frames_per_step):
  """steps/s and frames/s of each variant, and JAX's speed-ups over the two PyTorch sides."""
  rate = {v: rates.get(v) for v in STEP_VARIANTS}
  return {"steps_per_s": rate,
          "frames_per_s": {v: r * frames_per_step if r else None for v, r in rate.items()},
          "speedup_vs_eager": {d: ratio(rate[f"jax_{d}"], rate["torch_eager"])
                               for d in ("float32", "bfloat16")},
          "speedup_vs_compile": {d: ratio(rate[f"jax_{d}"], rate["torch_compile"])
                                 for d in ("float32", "bfloat16")}}


def equivalence(batch, image_size, model, params):
  """reward_step.check_equivalence in float32, both sides at "highest" matmul precision (so TF32
  does not blur it); its PyTorch side runs on the CPU."""
  torch = sys.modules.get("torch")
  precision = torch.get_float32_matmul_precision() if torch else None
  try:
    if torch:
      torch.set_float32_matmul_precision("highest")
    with jax.default_matmul_precision("highest"):
      result = reward_step.check_equivalence(model, params, batch, image_size)
  finally:
    if torch:
      torch.set_float32_matmul_precision(precision)
  return dict(result, grad_tolerance=reward_step.GRAD_TOLERANCE)


def step_shape(episodes, steps, image_size, plan, torch_status, out, save, equivalent=False):
  """Fills `out` with one shape's figures: the four variants, speed-ups and (equivalent=True)
  the port's equivalence."""
  out.update(episodes=episodes, steps_per_episode=steps, image_size=image_size,
             frames_per_step=episodes * steps)
  batch = reward_step.make_batch(episodes, steps, image_size, seed=1)
  runners, model, params = step_runners(batch, image_size, torch_status, out)
  save()
  if equivalent and model is not None and "skipped" not in torch_status:
    log("  equivalence of the PyTorch port (float32)")
    guarded(out, "equivalence", lambda: equivalence(batch, image_size, model, params))
  log(f"  timing {', '.join(runners)}")
  failures = {}
  rates = interleaved_rates(runners, plan.step_blocks, plan.step_block_s, failures)
  for variant, runner in runners.items():
    out[variant]["steps_per_block"] = runner.steps_per_block
  for variant, error in failures.items():
    out[variant]["error"] = error
  out.update(step_figures(rates, episodes * steps), blocks=plan.step_blocks)


def part_step(plan, out, save, clock):
  """(a) the train step at each of plan.step_shapes."""
  out["torch"] = torch_info()
  for name, episodes, steps, image_size in plan.step_shapes:
    if clock.remaining() < plan.part_min_s["step_shape"]:
      out[name] = {"skipped": f"{clock.remaining():.0f} s of the budget left"}
      continue
    log(f"(a) step {name}: {episodes} x {steps} steps at {image_size}^2")
    guarded_fill(out, name, lambda o, e=episodes, k=steps, s=image_size, n=name: step_shape(
        e, k, s, plan, out["torch"], o, save, n in plan.equivalence_shapes))
    release_memory()
    save()


# --- (b) the sharded device cache -----------------------------------------------------------------


def generate_dataset(episodes, lengths, image_size, root=BENCH_DIR):
  """Facts of a main + wrist embedded dataset, generated (once) under `root`: its "dir" (the
  version directory), whether it was generated now, and the seconds that took."""
  from rrd_jax.data import embedded  # pylint: disable=import-outside-toplevel
  params = embedded.EmbeddedParams(num_episodes=episodes, min_length=lengths[0],
                                   max_length=lengths[1], image_size=image_size)
  info = os.path.join(os.path.expanduser(root), params.key(), embedded.BUILDER_NAME,
                      embedded.DATASET_VERSION, "dataset_info.json")
  existed = os.path.exists(info)
  start = time.perf_counter()
  version_dir = embedded.build_embedded_dataset(root, params)
  return {"dir": version_dir, "episodes": episodes, "episode_lengths": list(lengths),
          "stored_image_size": image_size, "generated": not existed,
          "generation_s": time.perf_counter() - start}


GENERATE_CHILD = """import json, sys
from benchmarks import accelerator
print(json.dumps(accelerator.generate_dataset(*json.loads(sys.argv[1]))))
"""


def start_generation(episodes, lengths, image_size, root=BENCH_DIR):
  """A child process generating a dataset while part a runs (the generator is one process: on a
  many-core host it takes one core and its minutes overlap part a's); no GPU for it."""
  log(f"  dataset: {episodes} episodes of {lengths[0]}-{lengths[1]} steps at {image_size}^2, "
      "generating in the background")
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(
      p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p))
  output = tempfile.TemporaryFile("w+")  # files, not pipes: its progress bars would fill a pipe
  child = subprocess.Popen(
      [sys.executable, "-c", GENERATE_CHILD,
       json.dumps([episodes, list(lengths), image_size, root])],
      cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
  child.output = output
  return child


def start_generators(plan):
  """{key: child} generating part b's dataset and the seed-shape stream's (if any)."""
  children = {"cache": start_generation(plan.cache_episodes, plan.cache_lengths,
                                        plan.cache_image_size, plan.bench_dir)}
  if any(source == "seed" for *_, source in plan.stream_shapes):
    children["seed_stream"] = start_generation(plan.seed_stream_episodes, LIBERO10_LENGTHS, 256,
                                               plan.bench_dir)
  return children


def dataset(context, key, episodes, lengths, image_size, timeout, root=BENCH_DIR):
  """Facts of a generated dataset (generate_dataset): from the background child started for it
  (context["children"][key]), else generated here and now."""
  child = context.get("children", {}).pop(key, None)
  if child is None:
    log(f"  dataset: {episodes} episodes of {lengths[0]}-{lengths[1]} steps at {image_size}^2")
    return generate_dataset(episodes, lengths, image_size, root)
  log(f"  waiting for the background generator of {key} (at most {timeout:.0f} s)")
  start = time.perf_counter()
  try:
    child.wait(timeout=max(timeout, 1))
  except subprocess.TimeoutExpired:
    child.kill()
    child.wait()
    raise
  child.output.seek(0)
  output = child.output.read()
  child.output.close()
  if child.returncode:
    raise RuntimeError(f"the background generator exited with status {child.returncode}: "
                       f"{output[-1000:]}")
  facts = next(json.loads(line) for line in reversed(output.splitlines())
               if line.startswith('{"dir"'))
  return dict(facts, generated_in_background=True, waited_s=time.perf_counter() - start)


def cache_config(version_dir, plan):
  """Part b's config: version_dir "" for frames rendered in memory (no dataset is opened)."""
  from rrd_jax.config import loading  # pylint: disable=import-outside-toplevel
  episodes, steps = plan.cache_batch
  return loading.load_config(overrides={
      "data.dataset_dir": version_dir, "data.image_size": plan.cache_image_size,
      "model.use_wrist": True, "rrd.episodes_per_batch": episodes, "rrd.sample_size": steps,
      "data.eval_fraction": 0.0, "data.cache": "device"})


def tensorflow_available():
  return has_module("tensorflow") and has_module("tensorflow_datasets")


RENDERED = "rendered in memory (no tensorflow)"
RENDER_CHUNK_EPISODES = 4  # episodes per task of the rendering processes
RENDER_FRAMES_PER_PROCESS = 5000  # fewer expected frames than this per process: fewer processes


def render_chunk(args):
  """Episodes [first, last) of the embedded "touch" dataset of part b's sizes (the same
  EmbeddedParams as generate_dataset: seed 0, main + wrist at image_size), as numpy arrays: what
  the RLDS dataset stores, before its JPEG encoding. Runs in the rendering processes."""
  first, last, num_episodes, lengths, image_size = args
  from rrd_jax.data import scenes  # pylint: disable=import-outside-toplevel
  params = scenes.EmbeddedParams(num_episodes=num_episodes, min_length=lengths[0],
                                   max_length=lengths[1], image_size=image_size)
  out = []
  for index in range(first, last):
    steps = scenes.generate_episode(params, index)["steps"]
    observation = steps["observation"]
    out.append({"state": np.asarray(observation["state"], np.float32),
                "action": np.asarray(steps["action"], np.float32),
                "reward": np.asarray(steps["reward"], np.float32),
                "image": observation["image"], "wrist_image": observation["wrist_image"],
                "instruction": steps["language_instruction"][0]})
  return out


def render_processes(expected_frames):
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return int(max(1, min(cores or 1, expected_frames // RENDER_FRAMES_PER_PROCESS)))


def render_episodes(episodes, lengths, image_size, processes=1):
  """[episode dict] of render_chunk, in episode order; rendered by `processes` spawned processes
  (spawned, not forked: this process has JAX and its accelerator runtime started)."""
  chunks = [(first, min(first + RENDER_CHUNK_EPISODES, episodes), episodes, tuple(lengths),
             image_size) for first in range(0, episodes, RENDER_CHUNK_EPISODES)]
  if processes <= 1:
    return [episode for chunk in chunks for episode in render_chunk(chunk)]
  import concurrent.futures  # pylint: disable=import-outside-toplevel
  import multiprocessing  # pylint: disable=import-outside-toplevel
  with concurrent.futures.ProcessPoolExecutor(
      processes, mp_context=multiprocessing.get_context("spawn")) as pool:
    return [episode for result in pool.map(render_chunk, chunks) for episode in result]


UNKNOWN_INSTRUCTION = "<unk>"  # rrd_jax/data/source.py's (which imports tensorflow)


class RenderedLoader:
  """Episodes rendered in memory, behind the part of pipeline.EpisodeLoader's interface that
  cache.shard_plan, cache.shard_bytes and cache.DeviceCache read: index.lengths, inputs, targets
  (returns.episode_targets of config.returns' kind), instruction_ids (source.py's vocabulary:
  index 0 = unknown, then the training instructions sorted) and component_ids (one dataset).
  step_batches stands in for EpisodeLoader.step_batches (what cache._decode reads): each
  episode's steps once, in order, with true_reward = reward + the episode's offset as
  EpisodeLoader.load gives it; an episode is released once handed over, so
  the host holds about two copies of the frames at most (DeviceCache's concatenation and its
  padded copy), not three."""

  def __init__(self, episodes, inputs, returns_config):
    from rrd_jax.data import returns  # pylint: disable=import-outside-toplevel
    self._episodes = list(episodes)
    count = len(self._episodes)
    lengths = np.asarray([len(e["reward"]) for e in self._episodes], np.int64)
    self.index = types.SimpleNamespace(lengths=lengths)
    self.inputs = inputs
    offset = returns.reward_offset(returns_config.kind, returns_config.time_penalty)
    self.targets = returns.episode_targets(
        [float(np.sum(e["reward"], dtype=np.float64)) for e in self._episodes], lengths,
        np.full(count, offset, np.float32), np.full(count, returns_config.success == "all"))
    instructions = [e["instruction"] for e in self._episodes]
    self.vocab = [UNKNOWN_INSTRUCTION] + sorted(set(instructions) - {UNKNOWN_INSTRUCTION})
    self.instruction_ids = np.asarray([self.vocab.index(s) for s in instructions], np.int32)
    self.component_ids = np.zeros(count, np.int32)
    first = self._episodes[0]
    self.input_sizes = (first["state"].shape[-1], first["action"].shape[-1])

  def step_batches(self, episode_ids, **_):
    for e in np.asarray(episode_ids, np.int64):
      episode, self._episodes[e] = self._episodes[e], None
      if episode is None:
        raise RuntimeError(f"rendered episode {e} was already handed over")
      batch = {k: episode[k] for k in ("state", "action", *self.inputs.frames)}
      batch["true_reward"] = episode["reward"] + self.targets.reward_offsets[e]
      yield batch


def place_on_devices(loader, ids, config, out, save, host_copies):
  """(DeviceCache, mesh): the episodes `ids` of `loader` split over every device (cache.shard_plan)
  and decoded onto them by cache.DeviceCache itself, with its figures in `out`. host_copies:
  bytes of host memory needed per byte of the cache (None: not checked here)."""
  # pylint: disable=import-outside-toplevel
  from rrd_jax.data import cache
  from rrd_jax.data.sampling import SamplerOptions
  frames = int(loader.index.lengths[ids].sum())
  mesh = parallel.make_mesh()
  options = SamplerOptions.from_config(config, seed=0)
  shards = cache.shard_plan(loader, ids, options, loader.component_ids[ids], int(mesh.devices.size))
  per_device = cache.shard_bytes(loader, shards)
  available = parallel.available_bytes(mesh.devices.ravel()[0])
  out.update(devices=shards.num_shards, cameras=len(loader.inputs.frames),
             frames_per_device=[int(f) for f in shards.frames], gib_per_device=per_device / 2**30,
             device_gib_available=available / 2**30 if available else None)
  save()
  if available is not None and per_device > available:
    raise MemoryError(f"a shard needs {per_device / 2**30:.1f} GiB, the device has "
                      f"{available / 2**30:.1f} GiB free")
  host = parallel.host_available_bytes()
  if host_copies and host is not None and host_copies * per_device * shards.num_shards > host:
    raise MemoryError(f"decoding needs about {host_copies} x {per_device / 2**30:.1f} GiB of "
                      f"host memory per shard, the host has {host / 2**30:.1f} GiB available")
  what = "caching" if isinstance(loader, RenderedLoader) else "decoding"
  log(f"  {what} {frames} frames x {out['cameras']} cameras onto {shards.num_shards} device(s)")
  start = time.perf_counter()
  device = cache.DeviceCache(loader, ids, shards, options, mesh, progress=False)
  jax.block_until_ready(device.table)
  out["cache_build_s"] = time.perf_counter() - start
  out["cache_build_frames_per_s"] = frames / out["cache_build_s"]
  save()
  return device, mesh


def build_cache(config, out, save):
  """(DeviceCache, mesh, the model's facts): indexes part b's dataset, decodes it onto the
  devices."""
  from rrd_jax.train import prepare  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  data = prepare.open_training_data(config, log=lambda *_: None)
  out["index_s"] = time.perf_counter() - start
  loader, ids = data.loader, data.train_ids
  out["dataset"]["frames"] = frames = int(loader.index.lengths[ids].sum())
  if out["dataset"]["generated"]:
    out["dataset"]["generator_frames_per_s"] = frames / out["dataset"]["generation_s"]
  device, mesh = place_on_devices(loader, ids, config, out, save, HOST_COPIES)
  return device, mesh, {"input_keys": loader.inputs.keys, "num_instructions": len(data.vocab),
                        "input_sizes": tuple(data.input_sizes())}


def build_rendered_cache(config, plan, out, save):
  """(DeviceCache, mesh, the model's facts) without tensorflow: part b's episodes (same sizes and
  generator as its RLDS dataset) rendered in memory (render_episodes), then placed on the devices
  by cache.DeviceCache through a RenderedLoader."""
  from rrd_jax.config.inputs import ModelInputs  # pylint: disable=import-outside-toplevel
  inputs = ModelInputs.from_config(config)
  episodes, lengths, size = plan.cache_episodes, plan.cache_lengths, plan.cache_image_size
  expected_frames = episodes * sum(lengths) / 2
  processes = render_processes(expected_frames)
  out["dataset"] = {"source": RENDERED, "episodes": episodes, "episode_lengths": list(lengths),
                    "stored_image_size": size, "render_processes": processes}
  host = parallel.host_available_bytes()
  from rrd_jax.data import cache  # pylint: disable=import-outside-toplevel
  expected_bytes = expected_frames * cache.frame_bytes(inputs)
  if host is not None and HOST_COPIES * expected_bytes > host:
    raise MemoryError(f"rendering and caching need about {HOST_COPIES} x "
                      f"{expected_bytes / 2**30:.1f} GiB of host memory, the host has "
                      f"{host / 2**30:.1f} GiB available")
  log(f"  rendering {episodes} episodes of {lengths[0]}-{lengths[1]} steps at {size}^2 in "
      f"memory ({processes} process{'es' if processes > 1 else ''}; no tensorflow)")
  start = time.perf_counter()
  loader = RenderedLoader(render_episodes(episodes, lengths, size, processes), inputs,
                          config.returns)
  out["dataset"]["generation_s"] = time.perf_counter() - start
  out["dataset"]["frames"] = frames = int(loader.index.lengths.sum())
  out["dataset"]["generator_frames_per_s"] = frames / out["dataset"]["generation_s"]
  save()
  device, mesh = place_on_devices(loader, np.arange(episodes, dtype=np.int64), config, out, save,
                                  None)
  return device, mesh, {"input_keys": inputs.keys, "num_instructions": len(loader.vocab),
                        "input_sizes": loader.input_sizes}


def sample_gather_s(device, chunk, repeats):
  """Median seconds of sampling + gathering `chunk` batches in one scanned call (no update)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  @jax.jit
  def sample_only(table, probabilities):
    def body(total, step):
      batch = device.sample(table, probabilities, step)
      leaves = jax.tree.leaves(batch)
      return total + sum(jnp.sum(x[..., :1].astype(jnp.float32)) for x in leaves), None
    return jax.lax.scan(body, 0.0, jnp.arange(chunk))[0]

  run = lambda: sample_only(device.table, device.probabilities).block_until_ready()
  run()
  return common.timed_median(run, repeats)


def time_cache(config, device, mesh, plan, input_keys, num_instructions, input_sizes):
  """Cache steps/s vs the ceiling (one fixed device-resident batch), as device_cache.py does.
  input_keys: the model's inputs; num_instructions: the vocabulary's size; input_sizes: (state
  size, action size)."""
  # pylint: disable=import-outside-toplevel
  import functools
  import jax.numpy as jnp
  from rrd_jax.train import step as step_lib
  chunk = plan.cache_chunk
  holder = {"state": step_lib.create_train_state(
      config, num_instructions, *input_sizes, rng=jax.random.PRNGKey(0),
      sharding=parallel.replicated(mesh)), "step": 0}
  cached_fn = step_lib.make_cached_train_fn(input_keys, config.rrd, mesh, device)
  fixed = jax.device_put(device.sample(device.table, device.probabilities, 0),
                         parallel.batch_sharding(mesh))
  update = functools.partial(step_lib.train_update, input_keys=input_keys, rrd_config=config.rrd)

  @functools.partial(jax.jit, static_argnums=(2,), donate_argnums=(0,))
  def ceiling_fn(s, batch, n):
    s, metrics = jax.lax.scan(lambda s, _: update(s, batch), s, jnp.arange(n))
    return s, jax.tree.map(lambda m: m.mean(0), metrics)

  def cache_steps():
    holder["state"], m = cached_fn(holder["state"], device.table, device.probabilities,
                                   holder["step"], chunk)
    jax.block_until_ready(m)
    holder["step"] += chunk

  def ceiling_steps():
    holder["state"], m = ceiling_fn(holder["state"], fixed, chunk)
    jax.block_until_ready(m)

  first = {}
  for name, fn in (("cache", cache_steps), ("ceiling", ceiling_steps)):
    start = time.perf_counter()
    fn()  # compilation
    first[name] = time.perf_counter() - start
  sample_s = sample_gather_s(device, chunk, plan.cache_repeats)
  times = {"cache": [], "ceiling": []}
  for _ in range(plan.cache_repeats):  # interleaved, so load changes hit both alike
    for name, fn in (("cache", cache_steps), ("ceiling", ceiling_steps)):
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  rate = {k: chunk / float(np.median(v)) for k, v in times.items()}
  frames = config.rrd.episodes_per_batch * config.rrd.sample_size
  return {"batch": f"{config.rrd.episodes_per_batch} x {config.rrd.sample_size}",
          "image_size": config.data.image_size, "steps_per_call": chunk,
          "first_call_s": first, "cache_steps_per_s": rate["cache"],
          "ceiling_steps_per_s": rate["ceiling"], "cache_frames_per_s": rate["cache"] * frames,
          "fraction_of_ceiling": rate["cache"] / rate["ceiling"],
          "sample_gather_ms_per_step": 1000 * sample_s / chunk}


def part_cache(plan, out, save, context, clock):
  """(b) the sharded device cache on a LIBERO-10-sized main + wrist dataset: the generated RLDS
  dataset (frames_source "rlds"), or without tensorflow the same generator's episodes rendered in
  memory (frames_source RENDERED; parts c and d, which need the RLDS dataset, are skipped then)."""
  if tensorflow_available():
    out["frames_source"] = "rlds"
    out["dataset"] = dataset(context, "cache", plan.cache_episodes, plan.cache_lengths,
                             plan.cache_image_size, clock.remaining(), plan.bench_dir)
    version_dir = context["cache_dataset"] = out["dataset"]["dir"]
    save()
    config = cache_config(version_dir, plan)
    device, mesh, facts = build_cache(config, out, save)
  else:
    out["frames_source"] = RENDERED
    config = cache_config("", plan)
    device, mesh, facts = build_rendered_cache(config, plan, out, save)
  log("  timing cache steps vs the ceiling")
  out.update(time_cache(config, device, mesh, plan, **facts))


# --- (c) the tf.data stream -----------------------------------------------------------------------


def stream_setup(version_dir, episodes, steps, image_size):
  """(batch iterator, step(numpy batch) -> metrics, first batch): the objects training builds."""
  # pylint: disable=import-outside-toplevel
  from rrd_jax.config import loading
  from rrd_jax.data import pipeline
  from rrd_jax.data.sampling import SamplerOptions
  from rrd_jax.train import prepare
  from rrd_jax.train import step as step_lib
  config = loading.load_config(overrides={
      "data.dataset_dir": version_dir, "data.image_size": image_size,
      "rrd.episodes_per_batch": episodes, "rrd.sample_size": steps, "data.eval_fraction": 0.0})
  data = prepare.open_training_data(config, log=lambda *_: None)
  batches = pipeline.train_dataset(
      data.loader, data.train_ids, SamplerOptions.from_config(config, config.seed),
      num_parallel_calls=config.data.num_parallel_calls).as_numpy_iterator()
  mesh = parallel.make_mesh(config.mesh.data)
  holder = {"state": step_lib.create_train_state(
      config, len(data.vocab), *data.input_sizes(), rng=jax.random.PRNGKey(0),
      sharding=parallel.replicated(mesh))}
  train_step = step_lib.make_train_step(data.loader.inputs.keys, config.rrd, mesh)
  sharding = parallel.batch_sharding(mesh)

  def step(batch):
    holder["state"], metrics = train_step(holder["state"], parallel.to_global(batch, sharding))
    return metrics

  return batches, step, next(batches)


def _seconds(fn, count):
  start = time.perf_counter()
  result = None
  for _ in range(count):
    result = fn()
  jax.block_until_ready(result)
  return time.perf_counter() - start


def stream_rounds(batches, step, batch, frames, plan):
  """Delivered (the stream alone), consumed (the step alone) and training-from-the-stream
  frames/s, in alternating rounds of about plan.stream_block_s each; medians."""
  jax.block_until_ready(step(batch))  # compilation
  for _ in range(5):  # tf.data warm-up (autotuning, thread pools)
    next(batches)
  per_batch = _seconds(lambda: next(batches), 3) / 3
  per_step = _seconds(lambda: step(batch), 3) / 3
  n_batches = block_count(per_batch, plan.stream_block_s, 1000)
  n_steps = block_count(per_step, plan.stream_block_s, 1000)
  n_together = block_count(max(per_batch, per_step), plan.stream_block_s, 1000)
  delivered, consumed, together, waits = [], [], [], []
  for _ in range(plan.stream_rounds):
    delivered.append(n_batches * frames / _seconds(lambda: next(batches), n_batches))
    consumed.append(n_steps * frames / _seconds(lambda: step(batch), n_steps))
    rate, wait = common.train_from_stream(batches, step, n_together, frames)
    together.append(rate)
    waits.append(wait)
  delivered_fps, consumed_fps = median_rate(delivered), median_rate(consumed)
  return {"delivered_frames_per_s": delivered_fps, "consumed_frames_per_s": consumed_fps,
          "headroom": delivered_fps / consumed_fps,
          "training_frames_per_s": median_rate(together),
          "training_data_wait_fraction": median_rate(waits), "rounds": plan.stream_rounds,
          "blocks": {"batches": n_batches, "steps": n_steps, "training_steps": n_together}}


def stream_shape(name, episodes, steps, image_size, source, plan, context, timeout, out):
  """Fills `out` with one shape's stream figures; source "cache": part b's dataset, "seed": a
  dataset of LIBERO-length episodes stored at 256^2 (as LIBERO's), generated here."""
  if source == "seed":
    out["dataset"] = dataset(context, "seed_stream", plan.seed_stream_episodes, LIBERO10_LENGTHS,
                             256, timeout, plan.bench_dir)
    version_dir = out["dataset"]["dir"]
  elif "cache_dataset" in context:
    version_dir = context["cache_dataset"]
    out["dataset"] = {"dir": version_dir, "stored_image_size": plan.cache_image_size}
  else:
    raise RuntimeError("part b's dataset is missing (its generation failed or was skipped)")
  out.update(batch=f"{episodes} x {steps} steps at {image_size}^2", image_size=image_size,
             frames_per_step=episodes * steps)
  log(f"(c) stream {name}: {out['batch']}")
  batches, step, batch = stream_setup(version_dir, episodes, steps, image_size)
  out.update(stream_rounds(batches, step, batch, episodes * steps, plan))


def part_stream(plan, out, save, context, clock):
  """(c) the tf.data stream with all the host's cores, at each of plan.stream_shapes."""
  out.update(host_cores=os.cpu_count(), usable_cores=len(os.sched_getaffinity(0)),
             num_parallel_calls="AUTOTUNE (data.num_parallel_calls=-1)")
  for name, episodes, steps, image_size, source in plan.stream_shapes:
    if clock.remaining() < plan.part_min_s["stream_shape"]:
      out[name] = {"skipped": f"{clock.remaining():.0f} s of the budget left"}
      continue
    guarded_fill(out, name, lambda o, n=name, e=episodes, k=steps, s=image_size, src=source:
                 stream_shape(n, e, k, s, src, plan, context, clock.remaining(), o))
    release_memory()
    save()


# --- (d) the seed command end to end -------------------------------------------------------------

# shared/docs/RRD_REFERENCE.md's seed command; the dataset, image size, epochs, cycles and
# checkpoint directory come from seed_args.
SEED_FLAGS = ("--env", "libero-10", "--env_type", "normal", "--alg", "rrd", "--basis_alg", "sac",
              "--rrd_reward_only", "True", "--tag", "pretrain_RRD_Libero10", "--cuda",
              "--iterations", "100", "--train_batches", "50", "--batch_size", "32",
              "--rrd_batch_size", "32", "--rrd_sample_size", "32", "--save_freq", "2",
              "--save_final", "True")
SEED_TAG = "pretrain_RRD_Libero10"


def seed_args(version_dir, plan, checkpoint_dir):
  return [*SEED_FLAGS, "--libero_dataset_path", version_dir,
          "--libero_image_size", str(plan.seed_image_size), "--epochs", str(plan.seed_epochs),
          "--cycles", str(plan.seed_cycles), "--checkpoint_dir", checkpoint_dir]


def seed_commands(version_dir, plan, tmp):
  """{run: (python args, cwd, workdir)}: `rrd_jax.cli.pytorch_flags` with the seed flags (streaming), and
  its equivalent `rrd_jax.cli.train` command (pytorch_flags.translate's overrides) with data.cache=device."""
  from rrd_jax.cli import pytorch_flags  # pylint: disable=import-outside-toplevel
  runs = {}
  for run_name in ("streaming", "device_cached"):
    cwd = os.path.join(tmp, run_name)
    args = seed_args(version_dir, plan, os.path.join(cwd, "checkpoints"))
    workdir, overrides = pytorch_flags.translate(pytorch_flags.make_parser().parse_args(args))
    if run_name == "streaming":
      runs[run_name] = (["-m", "rrd_jax.cli.pytorch_flags", *args], cwd, os.path.join(cwd, workdir))
    else:
      runs[run_name] = (["-m", "rrd_jax.cli.train", "--config",
                         os.path.join(ROOT, "configs", "libero_rrd.py"), "--workdir",
                         os.path.join(cwd, workdir),
                         *[f"--config.{k}={v}" for k, v in overrides.items()],
                         "--config.data.cache=device"], cwd, os.path.join(cwd, workdir))
  return runs


def run_metrics(workdir):
  """Figures a finished run left in its workdir: training steps/s and data wait (medians over
  the logged intervals after the first, which holds the compilation), data_stats.json."""
  out = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f if line.strip()]
    train = [r for r in rows if "train/steps_per_s" in r]
    later = train[1:] or train
    if later:
      out["train_steps_per_s"] = median_rate([r["train/steps_per_s"] for r in later])
      out["train_data_wait_fraction"] = median_rate(
          [r["train/data_wait_fraction"] for r in later if "train/data_wait_fraction" in r])
    out["last_step"] = max((r.get("step", 0) for r in rows), default=None)
  stats = os.path.join(workdir, "data_stats.json")
  if os.path.exists(stats):
    with open(stats, encoding="utf-8") as f:
      out["data_stats"] = json.load(f)
  return out


def run_cli(args, cwd, workdir, timeout):
  """Runs `python ARGS` in cwd: wall seconds, exit status and the run's own figures."""
  os.makedirs(cwd, exist_ok=True)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p))
  out = {"command": " ".join(["python", *args]), "timeout_s": timeout}
  start = time.perf_counter()
  try:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
  except subprocess.TimeoutExpired as e:
    out.update(wall_s=time.perf_counter() - start,
               error=f"stopped after {timeout:.0f} s (the time budget)",
               stderr_tail=(e.stderr or b"")[-1500:].decode("utf-8", "replace")
               if isinstance(e.stderr, bytes) else (e.stderr or "")[-1500:])
    return out
  out.update(wall_s=time.perf_counter() - start, returncode=proc.returncode)
  if proc.returncode:
    out.update(error=f"exit status {proc.returncode}", stderr_tail=proc.stderr[-1500:])
  out.update(run_metrics(workdir))
  return out


def part_seed_command(plan, out, save, context, clock):
  """(d) the seed command (500 updates) end to end on part b's dataset, streaming and cached."""
  if "cache_dataset" not in context:
    raise RuntimeError("part b's dataset is missing (its generation failed or was skipped)")
  out.update(dataset=context["cache_dataset"], updates=plan.seed_epochs * plan.seed_cycles,
             image_size=plan.seed_image_size,
             note="the legacy CLI has no cache flag: device_cached runs its equivalent "
                  "rrd_jax.cli.train command with --config.data.cache=device")
  with tempfile.TemporaryDirectory() as tmp:
    for name, (args, cwd, workdir) in seed_commands(context["cache_dataset"], plan, tmp).items():
      timeout = clock.remaining()
      if timeout < plan.part_min_s["seed_run"]:
        out[name] = {"skipped": f"{timeout:.0f} s of the budget left"}
        continue
      log(f"(d) seed command, {name} ({timeout:.0f} s left)")
      out[name] = run_cli(args, cwd, workdir, timeout)
      save()


# --- the whole run --------------------------------------------------------------------------------


class Clock:
  def __init__(self, budget_s):
    self.start, self.budget_s = time.perf_counter(), budget_s

  def elapsed(self):
    return time.perf_counter() - self.start

  def remaining(self):
    return self.budget_s - self.elapsed()


def guarded_fill(out, key, fill):
  """fill(out[key]) on a dict already in `out` (so what it wrote survives); an exception adds
  {"error": ...} to it."""
  part = out.setdefault(key, {})
  try:
    fill(part)
  except Exception as e:  # pylint: disable=broad-except  (one failure must not lose the rest)
    traceback.print_exc()
    log(f"{key} failed: {error_text(e)}")
    part["error"] = error_text(e)
  return part


def release_memory():
  """Frees what a finished part left on the devices (torch's cache, compiled programs)."""
  gc.collect()
  if "torch" in sys.modules:
    torch = sys.modules["torch"]
    if torch.cuda.is_available():
      torch.cuda.empty_cache()
    torch._dynamo.reset()  # pylint: disable=protected-access
  jax.clear_caches()


def accelerator_info():
  device = jax.devices()[0]
  info = {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "host_cores": os.cpu_count()}
  try:
    stats = device.memory_stats() or {}
    info["device_memory_gib"] = stats["bytes_limit"] / 2**30 if "bytes_limit" in stats else None
  except Exception:  # pylint: disable=broad-except  (backends without memory statistics)
    info["device_memory_gib"] = None
  return info


def goal(value, target, at_most=False):
  met = None if value is None else (value <= target if at_most else value >= target)
  return {"value": value, "goal": f"{'<=' if at_most else '>='} {target}", "met": met}


def goals(result, plan):
  """Issue 16's goals (meaningful on a GPU) against this run's figures."""
  shape = result.get("step", {}).get(plan.step_shapes[-1][0], {})
  out = {"step_shape": plan.step_shapes[-1][0], "stream_shape": plan.stream_shapes[0][0],
         "applies": plan is FULL and jax.default_backend() == "gpu"}  # set for one GPU
  for dtype in ("float32", "bfloat16"):
    out[f"step_{dtype}_vs_eager"] = goal(shape.get("speedup_vs_eager", {}).get(dtype), 3.0)
    out[f"step_{dtype}_vs_compile"] = goal(shape.get("speedup_vs_compile", {}).get(dtype), 1.5)
  out["device_cache_fraction_of_ceiling"] = goal(
      result.get("device_cache", {}).get("fraction_of_ceiling"), 0.9)
  stream = result.get("stream", {}).get(plan.stream_shapes[0][0], {})
  out["stream_data_wait_fraction"] = goal(stream.get("training_data_wait_fraction"), 0.1,
                                          at_most=True)
  return out


SUMMARY_KEYS = {"steps_per_s", "speedup_vs_eager", "speedup_vs_compile", "equal", "frames_source",
                "generated", "generation_s", "generator_frames_per_s", "cache_build_s",
                "cache_steps_per_s", "ceiling_steps_per_s", "fraction_of_ceiling",
                "delivered_frames_per_s", "consumed_frames_per_s", "training_data_wait_fraction",
                "wall_s", "train_steps_per_s", "error", "skipped"}


def flat(tree, prefix=""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from flat(value, f"{prefix}{key}.")
    else:
      yield prefix + key, value


def summary(result):
  """The headline figures as one flat {path: value} (what `benchmarks.run` prints)."""
  return {path: value for path, value in flat({k: v for k, v in result.items()
                                                if k not in ("summary", "goals")})
          if SUMMARY_KEYS & set(path.split(".")) and "data_stats" not in path
          and (value is None or isinstance(value, (int, float, str)))}


PARTS = (  # name, letter, needs tensorflow (part b renders its frames in memory without it)
    ("step", "a", False), ("device_cache", "b", False), ("stream", "c", True),
    ("seed_command", "d", True))


def part_function(name, plan, save, context, clock):
  return {"step": lambda out: part_step(plan, out, save, clock),
          "device_cache": lambda out: part_cache(plan, out, save, context, clock),
          "stream": lambda out: part_stream(plan, out, save, context, clock),
          "seed_command": lambda out: part_seed_command(plan, out, save, context, clock)}[name]


def run(quick=False, on_partial=None, plan=None):
  """All four parts; on_partial(result) after each part and shape (to write partial JSON).
  plan: QUICK or FULL by default."""
  plan = plan or (QUICK if quick else FULL)
  clock, context = Clock(plan.budget_s), {}
  result = {"plan": "quick" if quick else "full", "budget_s": plan.budget_s,
            "accelerator": accelerator_info()}
  has_tensorflow = tensorflow_available()

  def save():
    result["elapsed_s"] = clock.elapsed()
    result["summary"] = summary(result)
    if on_partial is not None:
      on_partial(result)

  if plan.generate_in_background and has_tensorflow:
    context["children"] = start_generators(plan)
  for name, letter, needs_tensorflow in PARTS:
    log(f"({letter}) {name}: {clock.elapsed():.0f} s elapsed, {clock.remaining():.0f} s left")
    if needs_tensorflow and not has_tensorflow:
      result[name] = {"skipped": "tensorflow / tensorflow_datasets not installed"}
    elif clock.remaining() < plan.part_min_s[name]:
      result[name] = {"skipped": f"{clock.remaining():.0f} s of the budget left"}
    else:
      start = time.perf_counter()
      guarded_fill(result, name, part_function(name, plan, save, context, clock))
      result[name]["part_s"] = time.perf_counter() - start
    release_memory()
    save()
  for child in context.get("children", {}).values():  # a part that would have used it was skipped
    child.kill()
  guarded(result, "goals", lambda: goals(result, plan))
  save()
  log(f"done in {clock.elapsed():.0f} s")
  return result


def main():
  args = common.parser(__doc__).parse_args()
  machine = common.machine()

  def on_partial(result):
    if args.out:
      common.write(args.out, {"machine": machine, "accelerator": result})

  common.emit({"machine": machine, "accelerator": run(args.quick, on_partial)}, args.out)


if __name__ == "__main__":
  main()
