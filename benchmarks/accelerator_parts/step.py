"""Part a of benchmarks/accelerator.py: the jitted reward train step (benchmarks/reward_step.py's
jax_setup, no augmentation) in float32 and bfloat16 against the PyTorch port eager and under
torch.compile, each batch already on the device, the variants timed in interleaved blocks of
back-to-back steps (one synchronisation per block), medians; the port's loss / gradient
equivalence in float32 at "highest" matmul precision."""

import sys
import time
import traceback

import jax

from benchmarks import common, reward_step, stream_timing
from benchmarks.accelerator_parts import guards
from rrd_jax.run import parallel

STEP_VARIANTS = ("jax_float32", "jax_bfloat16", "torch_eager", "torch_compile")
TRAIN_KEYS = ("true_reward", "episode_return", "episode_length")


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
    self.steps_per_block = stream_timing.block_count((time.perf_counter() - start) / 3, block_s)

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
  from benchmarks.torch_ports import torch_reference  # pylint: disable=import-outside-toplevel
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
  if not common.has_module("torch"):
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
  from benchmarks.torch_ports import torch_reference  # pylint: disable=import-outside-toplevel
  device = torch_device()
  trainer = torch_reference.trainer_from_flax(image_size, params, compiled, device)
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
    guards.log(f"  {variant}: compiling and warming up")
    guards.guarded(out, variant, lambda v=variant: setup(v))
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
        failures[variant] = common.error_text(e)
        runners.pop(variant)
  return {variant: common.median_or_none(rates[variant]) for variant in runners}


def step_figures(rates, frames_per_step):
  """steps/s and frames/s of each variant, and JAX's speed-ups over the two PyTorch sides."""
  rate = {v: rates.get(v) for v in STEP_VARIANTS}
  return {"steps_per_s": rate,
          "frames_per_s": {v: r * frames_per_step if r else None for v, r in rate.items()},
          "speedup_vs_eager": {d: common.ratio(rate[f"jax_{d}"], rate["torch_eager"])
                               for d in ("float32", "bfloat16")},
          "speedup_vs_compile": {d: common.ratio(rate[f"jax_{d}"], rate["torch_compile"])
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
    guards.log("  equivalence of the PyTorch port (float32)")
    guards.guarded(out, "equivalence", lambda: equivalence(batch, image_size, model, params))
  guards.log(f"  timing {', '.join(runners)}")
  failures = {}
  rates = interleaved_rates(runners, plan.step_blocks, plan.step_block_s, failures)
  for variant, runner in runners.items():
    out[variant]["steps_per_block"] = runner.steps_per_block
  for variant, error in failures.items():
    out[variant]["error"] = error
  out.update(step_figures(rates, episodes * steps), blocks=plan.step_blocks)


def part_step(plan, out, save, budget):
  """(a) the train step at each of plan.step_shapes."""
  out["torch"] = torch_info()

  def fill(name, episodes, steps, image_size):
    def shape(o):
      guards.log(f"(a) step {name}: {episodes} x {steps} steps at {image_size}^2")
      step_shape(episodes, steps, image_size, plan, out["torch"], o, save,
                 name in plan.equivalence_shapes)
    return name, shape

  guards.fill_each(out, [fill(*shape) for shape in plan.step_shapes],
                   plan.part_min_s["step_shape"], budget, save)
