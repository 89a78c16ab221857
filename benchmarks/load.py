"""Time to the first train step and peak host RAM: rrd_jax vs the PyTorch tool's loading design.

python -m benchmarks.load [--quick | --smoke] [--image-size 64] [--out RESULT.json]

Dataset: an embedded LIBERO-layout RLDS dataset of LIBERO-10's size (379 episodes of 200..336
steps, ~101k frames; --quick: 40 episodes), stored and trained at --image-size (64x64 by default:
the baseline's whole-dataset copy of LIBERO-10 at 256x256 would need ~115 GB). Generated once
under ~/.cache/rrd_jax/bench (not timed).

ours: `python -m rrd_jax.cli.train --config configs/libero_rrd.py:seed` on that dataset (index built
from the records, only the sampled frames decoded), timed until it logs step 1; run twice with
one fresh persistent compilation cache (config.compile_cache_dir): the first run compiles and
fills it, the second (`ours_ttfs_s`, the headline `ttfs_ratio`) reads its programs from it, as
every run after a user's first does.
theirs: the PyTorch tool's design (`--child baseline`): iterate the whole RLDS dataset, decode
every frame's main and wrist images with PIL into per-episode Python lists (the environment's
uint8 copies), resize the main image into a float32 replay buffer, then one train step of
benchmarks/torch_ports/torch_reference.py on 1 episode x 32 steps.
Each side runs in its own process under a small wrapper process (`--child measure`) that times
it from spawn to its "step 1" line and reads its peak RSS (getrusage RUSAGE_CHILDREN).
Figures: ttfs_ratio = ours / theirs (goal <= 0.1; first_run_ttfs_ratio for the cold cache), rss_ratio = ours / theirs (goal <= 0.2), and
the baseline's peak RSS projected to 256x256 and LIBERO-10's 101,469 frames.
--smoke: 3 episodes of 40-48 steps at 36x36 (seconds; checks the three processes run). Without
torch the baseline is not run (theirs_skipped says so) and the figures that need it are None.
"""

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBERO_10_EPISODES = 379
LIBERO_10_FRAMES = 101_469
FIRST_STEP_LINE = "step 1/"
# Per size: (episodes, (min, max) episode length, image size or None for --image-size)
SIZES = {"full": (LIBERO_10_EPISODES, (200, 336), None), "quick": (40, (200, 336), None),
         "smoke": (3, (40, 48), 36)}


def dataset_params(episodes, image_size, lengths=(200, 336)):
  from rrd_jax.data import embedded  # pylint: disable=import-outside-toplevel
  return embedded.EmbeddedParams(num_episodes=episodes, min_length=lengths[0],
                                 max_length=lengths[1], image_size=image_size,
                                 num_shards=min(16, episodes))


def dataset_dir(episodes, image_size, lengths=(200, 336)):
  from rrd_jax.data import embedded  # pylint: disable=import-outside-toplevel
  return embedded.build_embedded_dataset(os.path.expanduser(common.BENCH_DIR),
                                         dataset_params(episodes, image_size, lengths))


def vm_kib(field):
  with open("/proc/self/status", encoding="utf-8") as f:
    return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def baseline(directory, image_size, steps=32):
  """The PyTorch tool's LIBERO path: decode everything into memory, then train."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from benchmarks.torch_ports import torch_reference  # pylint: disable=import-outside-toplevel
  tf.config.set_visible_devices([], "GPU")
  rss_after_imports = vm_kib("VmRSS") * 1024
  builder = tfds.builder_from_directory(directory)
  skip = tfds.decode.SkipDecoding()
  dataset = builder.as_dataset(split="train", decoders={
      "steps": {"observation": {"image": skip, "wrist_image": skip}}})
  decode = lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  env_images, env_wrist, states, actions, returns, lengths = [], [], [], [], [], []
  for episode in dataset:  # every episode, every step, every frame
    images, wrist, state, action, reward = [], [], [], [], []
    for step in episode["steps"].as_numpy_iterator():
      images.append(decode(step["observation"]["image"]))
      wrist.append(decode(step["observation"]["wrist_image"]))
      state.append(step["observation"]["state"])
      action.append(step["action"])
      reward.append(step["reward"])
    env_images.append(images)
    env_wrist.append(wrist)
    states.append(np.stack(state))
    actions.append(np.stack(action))
    returns.append(float(np.sum(reward)))
    lengths.append(len(reward))
  resize = lambda image: np.asarray(Image.fromarray(image).resize((image_size, image_size),
                                                                   Image.BILINEAR))
  buffer = np.stack([resize(image) for episode in env_images for image in episode])
  buffer = buffer.astype(np.float32)  # the replay buffer's float32 observations
  state = np.concatenate(states).astype(np.float32)
  action = np.concatenate(actions).astype(np.float32)
  frames = len(buffer)
  # First RRD update: one episode, 32 sampled steps.
  rng = np.random.default_rng(0)
  episode = int(rng.integers(len(lengths)))
  start = int(np.sum(lengths[:episode]))
  rows = start + rng.choice(lengths[episode], size=steps, replace=False)
  next_rows = np.minimum(rows + 1, start + lengths[episode] - 1)
  model = torch_reference.TorchRewardNet(image_size)
  trainer = torch_reference.TorchTrainer(model)
  batch = {"image": torch.from_numpy(buffer[rows][None]),
           "state": torch.from_numpy(state[rows][None]),
           "next_state": torch.from_numpy(state[next_rows][None]),
           "action": torch.from_numpy(action[rows][None]),
           "episode_return": torch.tensor([returns[episode]], dtype=torch.float32),
           "episode_length": torch.tensor([float(lengths[episode])])}
  loss = float(trainer.step(batch).detach())
  print(f"{FIRST_STEP_LINE}1: train/loss={loss:.4g}", flush=True)
  print(json.dumps({"frames": frames, "rss_after_imports_bytes": rss_after_imports,
                    "vm_hwm_bytes": vm_kib("VmHWM") * 1024}), flush=True)


def ours_command(directory, image_size, workdir, compile_cache_dir):
  return [sys.executable, "-m", "rrd_jax.cli.train", "--config",
          os.path.join(ROOT, "configs", "libero_rrd.py:seed"), "--workdir", workdir,
          f"--config.compile_cache_dir={compile_cache_dir}",
          f"--config.data.dataset_dir={directory}", f"--config.data.image_size={image_size}",
          "--config.data.eval_fraction=0.0", "--config.train.num_steps=1",
          "--config.train.log_every_steps=1", "--config.checkpoint.every_steps=0",
          "--config.checkpoint.save_final=False"]


def measure(command):
  """Runs command; seconds from spawn to its FIRST_STEP_LINE, its peak RSS, its JSON lines."""
  start = time.perf_counter()
  env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
  ttfs, extra = None, {}
  for line in process.stdout:
    if ttfs is None and FIRST_STEP_LINE in line:
      ttfs = time.perf_counter() - start
    elif line.startswith("{"):
      extra.update(json.loads(line))
  if process.wait() or ttfs is None:
    raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {process.returncode})")
  peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
  return {"ttfs_s": ttfs, "peak_rss_bytes": peak, **extra}


def measure_in_wrapper(command):
  """`measure` in a fresh wrapper process, so RUSAGE_CHILDREN sees this command alone."""
  result = subprocess.run([sys.executable, "-m", "benchmarks.load", "--child", "measure", "--",
                           *command], cwd=ROOT, check=True, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))
  return json.loads(result.stdout.strip().splitlines()[-1])


def theirs(directory, image_size):
  """The baseline's figures, or {"skipped": ...} without torch (it trains the PyTorch port)."""
  if not common.has_module("torch"):
    return {"skipped": "torch not installed (pip install -r benchmarks/requirements.txt)"}
  return measure_in_wrapper([sys.executable, "-m", "benchmarks.load", "--child", "baseline",
                             "--dataset", directory, "--image-size", str(image_size)])


def run(size="full", image_size=64):
  episodes, lengths, size_image = SIZES[common.size_name(size)]
  image_size = size_image or image_size
  start = time.perf_counter()
  directory = dataset_dir(episodes, image_size, lengths)
  generate_s = time.perf_counter() - start
  with tempfile.TemporaryDirectory() as tmp:  # a fresh compilation cache: first run, then second
    first, ours = (measure_in_wrapper(ours_command(directory, image_size,
                                                   os.path.join(tmp, f"run{i}"),
                                                   os.path.join(tmp, "compilation")))
                   for i in (1, 2))
  baseline_figures = theirs(directory, image_size)
  theirs_ttfs, theirs_rss = baseline_figures.get("ttfs_s"), baseline_figures.get("peak_rss_bytes")
  frames, per_frame, projected = None, None, None
  if "frames" in baseline_figures:
    frames = baseline_figures["frames"]
    per_frame = (theirs_rss - baseline_figures["rss_after_imports_bytes"]) / frames
    projected = per_frame * (256 / image_size) ** 2 * LIBERO_10_FRAMES / 1e9
  return {"ttfs_ratio": common.ratio(ours["ttfs_s"], theirs_ttfs),
          "first_run_ttfs_ratio": common.ratio(first["ttfs_s"], theirs_ttfs),
          "ours_first_run_ttfs_s": first["ttfs_s"],
          "rss_ratio": common.ratio(ours["peak_rss_bytes"], theirs_rss),
          "ours_ttfs_s": ours["ttfs_s"], "theirs_ttfs_s": theirs_ttfs,
          "ours_peak_rss_gb": ours["peak_rss_bytes"] / 1e9,
          "theirs_peak_rss_gb": theirs_rss / 1e9 if theirs_rss else None,
          "theirs_bytes_per_frame": per_frame,
          "theirs_projected_rss_gb_256px_libero10": projected,
          "episodes": episodes, "frames": frames, "image_size": image_size,
          "dataset_generation_s": generate_s,
          **({"theirs_skipped": baseline_figures["skipped"]} if "skipped" in baseline_figures
             else {})}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_size_flags(parser)
  parser.add_argument("--image-size", type=int, default=64)
  parser.add_argument("--out", default="")
  parser.add_argument("--child", choices=["measure", "baseline"], help=argparse.SUPPRESS)
  parser.add_argument("--dataset", help=argparse.SUPPRESS)
  parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child == "measure":
    print(json.dumps(measure(args.command)))
  elif args.child == "baseline":
    baseline(args.dataset, args.image_size)
  else:
    common.prepare(common.size_of(args))
    common.emit({"machine": common.machine(), "load": run(common.size_of(args), args.image_size)},
                args.out)


if __name__ == "__main__":
  main()
