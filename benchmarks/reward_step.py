"""The jitted reward-model train step vs a PyTorch port of the same network, loss and optimiser.

python -m benchmarks.reward_step [--quick | --smoke] [--out RESULT.json]

JAX: `rrd_jax.train.step.make_train_step` on `configs/libero_rrd.py`'s default pixel model and loss
(mean form, Adam 3e-4), the numpy batch handed over as in train.py. PyTorch:
`benchmarks/torch_ports/torch_reference.py`, same inputs, eager (oneDNN) and with the model under
torch.compile (inductor's default mode). Shapes: the seed command's batch (1 episode x K=32 steps
at 256x256) and the default's (8 x 32) at 64x64 and 128x128 (--quick: the same shapes, 5 repeats
instead of 20; --smoke: 1 x 4 at 36x36, one repeat). All three start from the same
parameters; each shape first checks that JAX and eager PyTorch compute the same loss and
gradients on one batch, then times steps in turn (JAX, PyTorch eager, PyTorch compiled, JAX, ...;
warm-up excluded, the first of each, compilation included, recorded as *_first_step_s) and
reports medians: speedup = PyTorch eager / JAX seconds per step, speedup_vs_compile = compiled
PyTorch / JAX. samples/s counts steps (frames) per second. Without torch the PyTorch figures are
None (torch_skipped says why) and the JAX side still runs.
"""

import os
import statistics
import time

# libgomp's default (ACTIVE) makes torch's threads spin between ops; with other jobs on the cores
# that costs PyTorch 2-8x here, so the reference runs PASSIVE (its faster setting on this machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax
import numpy as np

from benchmarks import common
from rrd_jax.config import loading
from rrd_jax.config.inputs import ModelInputs
from rrd_jax.model import losses, networks
from rrd_jax.model.losses import LossOptions
from rrd_jax.run import parallel
from rrd_jax.train import step as step_lib

SHAPES = {  # per size: (name, episodes per batch B, steps per episode K, image size); the first
    # is the headline
    "full": (("seed_1x32_256px", 1, 32, 256), ("default_8x32_64px", 8, 32, 64),
             ("default_8x32_128px", 8, 32, 128)),
    "smoke": (("seed_like_1x4_36px", 1, 4, 36),),
}
SHAPES["quick"] = SHAPES["full"]  # --quick: fewer repeats of the same shapes
REPEATS = {"smoke": 1, "quick": 5, "full": 20}
TORCH_SIDES = ("torch", "torch_compile")  # eager and torch.compile'd PyTorch port
# Relative gradient error allowed: at 256x256 the conv kernels' gradients sum ~10^5 terms and
# oneDNN's order differs from XLA's (both of JAX's conv paths agree with each other to ~3e-6).
GRAD_TOLERANCE = 5e-3
PAUSE_S = 0.02  # between the two frameworks, so neither one's spinning worker threads are timed


def make_batch(episodes, steps, image_size, seed=0):
  """A random RRD batch: [B, K, ...] model inputs and targets, [B] returns and lengths."""
  rng = np.random.default_rng(seed)
  shape = (episodes, steps)
  lengths = rng.integers(steps, 4 * steps, size=episodes).astype(np.int32)
  return {"image": rng.integers(0, 256, size=shape + (image_size, image_size, 3), dtype=np.uint8),
          "state": rng.normal(size=shape + (8,)).astype(np.float32),
          "next_state": rng.normal(size=shape + (8,)).astype(np.float32),
          "action": rng.normal(size=shape + (7,)).astype(np.float32),
          "true_reward": rng.uniform(size=shape).astype(np.float32),
          "episode_return": (rng.uniform(size=episodes) * lengths).astype(np.float32),
          "episode_length": lengths}


def jax_setup(image_size, dtype="float32"):
  """(config, model, input keys, TrainState, jitted train step, mesh) for the default config."""
  # Plain Adam as in the PyTorch port (the default config's weight decay would make it AdamW).
  config = loading.load_config(overrides={"data.image_size": image_size, "model.dtype": dtype,
                                               "optim.weight_decay": 0.0})
  model = networks.build_model(config.model)
  input_keys = ModelInputs.from_config(config).keys
  state = step_lib.create_train_state(config, 1, 8, 7, rng=jax.random.PRNGKey(0))
  mesh = parallel.make_mesh(1)
  train_step = step_lib.make_train_step(input_keys, LossOptions.from_config(config.rrd), mesh)
  return config, model, input_keys, state, train_step, mesh


def check_equivalence(model, params, batch, image_size):
  """Loss and gradients of the JAX model and the PyTorch port (params copied over) on one batch."""
  from benchmarks.torch_ports import torch_reference  # pylint: disable=import-outside-toplevel
  inputs = {k: batch[k] for k in ("image", "state", "next_state", "action")}

  def loss_fn(p):
    pred = step_lib.predict_sampled(model.apply, p, inputs)
    return losses.rrd_loss(pred, batch["episode_return"], batch["episode_length"])

  jax_loss, jax_grads = jax.jit(jax.value_and_grad(loss_fn))(params)
  trainer = torch_reference.trainer_from_flax(image_size, params)
  torch_loss = trainer.loss(torch_reference.to_torch_batch(batch))
  torch_loss.backward()
  torch_grads = torch_reference.grads_as_flax(trainer.model, params)
  flat_jax = dict(jax.tree_util.tree_leaves_with_path(jax.device_get(jax_grads["params"])))
  flat_torch = dict(jax.tree_util.tree_leaves_with_path(torch_grads))
  assert flat_jax.keys() == flat_torch.keys(), (flat_jax.keys(), flat_torch.keys())
  grad_error = max(float(np.linalg.norm(flat_jax[k] - flat_torch[k]) /
                         max(np.linalg.norm(flat_torch[k]), 1e-12)) for k in flat_jax)
  torch_loss = float(torch_loss.detach())
  loss_error = abs(float(jax_loss) - torch_loss) / max(abs(torch_loss), 1e-12)
  return {"loss_jax": float(jax_loss), "loss_torch": torch_loss,
          "loss_rel_error": loss_error, "max_grad_rel_error": grad_error,
          "equal": bool(loss_error < 1e-4 and grad_error < GRAD_TOLERANCE)}


def timed_steps(steps, repeats, warmup):
  """{name: [seconds of each timed step]}: the steps run in turn (warm-up excluded), a pause
  before each; first_s: {name: seconds of its first step (compilation included)}."""
  times, first_s = {name: [] for name in steps}, {}
  for i in range(warmup + repeats):
    for name, fn in steps.items():
      time.sleep(PAUSE_S)
      start = time.perf_counter()
      fn()
      elapsed = time.perf_counter() - start
      if i == 0:
        first_s[name] = elapsed
      if i >= warmup:
        times[name].append(elapsed)
  return times, first_s


def shape_figures(times, first_s, samples):
  """Medians, samples/s and JAX's speed-ups over each PyTorch side (None where one is missing)."""
  median = {name: statistics.median(t) for name, t in times.items() if t}
  best = {name: min(t) for name, t in times.items() if t}
  jax_s = median["jax"]
  out = {"jax_step_s_median": jax_s, "jax_samples_per_s": samples / jax_s}
  for side, suffix in (("torch", ""), ("torch_compile", "_vs_compile")):
    side_s = median.get(side)
    out[f"{side}_step_s_median"] = side_s
    out[f"{side}_samples_per_s"] = common.ratio(samples, side_s)
    out[f"speedup{suffix}"] = common.ratio(side_s, jax_s)
    # Fastest repetitions: closer to an idle machine when other jobs share the cores.
    out[f"speedup{suffix}_best_of"] = common.ratio(best.get(side), best["jax"])
    out[f"{side}_first_step_s"] = first_s.get(side)
  out["jax_first_step_s"] = first_s["jax"]
  return out


def time_shape(episodes, steps, image_size, repeats, warmup=2):
  # warmup >= 2: JAX's second call compiles again (the state it returns is laid out on the mesh)
  """One shape: the port's equivalence, then JAX, eager and compiled PyTorch steps in turn."""
  _, model, input_keys, state, train_step, mesh = jax_setup(image_size)
  batch = make_batch(episodes, steps, image_size, seed=1)
  jax_batch = {k: batch[k] for k in [*input_keys, "true_reward", "episode_return",
                                     "episode_length"]}
  sharding = parallel.batch_sharding(mesh)
  out = {"episodes": episodes, "steps_per_episode": steps, "image_size": image_size,
         "repeats": repeats}

  def jax_step():
    nonlocal state
    state, metrics = train_step(state, parallel.to_global(jax_batch, sharding))
    jax.block_until_ready(metrics)

  step_fns = {"jax": jax_step}
  if common.has_module("torch"):
    import torch  # pylint: disable=import-outside-toplevel
    from benchmarks.torch_ports import torch_reference  # pylint: disable=import-outside-toplevel
    out["equivalence"] = check_equivalence(model, state.params, batch, image_size)
    torch_batch = torch_reference.to_torch_batch(batch)
    for side in TORCH_SIDES:
      trainer = torch_reference.trainer_from_flax(image_size, state.params,
                                                  compiled=side == "torch_compile")
      step_fns[side] = lambda trainer=trainer: trainer.step(torch_batch)
    out.update(torch_threads=torch.get_num_threads(),
               torch_omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))
  else:
    out["equivalence"] = {"loss_jax": None, "loss_torch": None, "loss_rel_error": None,
                          "max_grad_rel_error": None, "equal": None,
                          "skipped": "torch not installed"}
    out["torch_skipped"] = "torch not installed (pip install -r benchmarks/requirements.txt)"
  times, first_s = timed_steps(step_fns, repeats, warmup)
  out.update(shape_figures(times, first_s, episodes * steps))
  return out


def run(size="full"):
  size = common.size_name(size)
  repeats = REPEATS[size]
  load_before = os.getloadavg()[0]
  shapes = {name: time_shape(b, k, image_size, repeats)
            for name, b, k, image_size in SHAPES[size]}
  headline_name = SHAPES[size][0][0]
  headline = shapes[headline_name]
  by_shape = lambda key: {name: shape[key] for name, shape in shapes.items()}  # noqa: E731
  speedups = [s["speedup"] for s in shapes.values() if s["speedup"] is not None]
  checks = [s["equivalence"]["equal"] for s in shapes.values()]
  return {"size": size, "headline_shape": headline_name,
          "speedup_by_shape": by_shape("speedup"),
          "speedup_best_of_by_shape": by_shape("speedup_best_of"),
          "speedup_vs_compile_by_shape": by_shape("speedup_vs_compile"),
          "jax_samples_per_s": headline["jax_samples_per_s"],
          "torch_samples_per_s": headline["torch_samples_per_s"],
          "torch_compile_samples_per_s": headline["torch_compile_samples_per_s"],
          "speedup": headline["speedup"], "speedup_vs_compile": headline["speedup_vs_compile"],
          "speedup_min_over_shapes": min(speedups) if speedups else None,
          "equivalent": None if None in checks else all(checks),
          "load_average_1m": [load_before, os.getloadavg()[0]],  # other work on the machine
          "shapes": shapes}


def main():
  common.benchmark_main("reward_step", run, __doc__)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main()
