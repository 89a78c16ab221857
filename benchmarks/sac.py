"""SAC learner throughput: rrd_jax's fused-scan learner vs a straightforward PyTorch SAC.

python -m benchmarks.sac [--quick] [--out RESULT.json]

Both run Hopper-v5-sized SAC (11-d observations, 3-d actions; twin critics and actor MLP 256-256,
batch 256, Adam 3e-4) on the same machine, one process, side by side: the JAX learner runs
`updates_per_call` updates per jitted lax.scan call with batches drawn inside jit from the device
replay buffer (rrd_jax.rl.learner, reward.kind dense = plain SAC); PyTorch (benchmarks/torch_sac.py)
runs the same number of eager updates with NumPy-sampled batches, at its default intra-op thread
count and at 1 thread (the faster counts); when JAX runs on a GPU and PyTorch sees one, PyTorch
runs there too (batches sampled on the host, copied per update). Calls alternate (JAX, PyTorch,
...; warm-up excluded) and the medians give jax_updates_per_s, torch_updates_per_s and speedup.
Also: RRD-SAC updates/s (one RRD reward-model update + one SAC update per step) and env_steps_per_s
of the whole online loop (a short Hopper RRD-SAC run through rrd_jax.rl.agent_loop, past its
warm-up, one update per env step).
"""

import json
import os
import statistics
import tempfile
import time

import jax
import numpy as np

from benchmarks import common

OBS, ACT = 11, 3
CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "mujoco_rrd_sac.py")


def _config(**overrides):
  from rrd_jax import config_utils  # pylint: disable=import-outside-toplevel
  return config_utils.load_config(CONFIG_FILE, "hopper", overrides)


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


def learner_throughput(quick):
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_sac  # pylint: disable=import-outside-toplevel
  updates_per_call, repeats = (50, 3) if quick else (100, 8)
  buffer, episodes = _filled_buffer(20_000)
  state, train = _jax_learner("dense", updates_per_call)
  rrd_state, rrd_train = _jax_learner("rrd", updates_per_call)
  cat = lambda name: np.concatenate([getattr(e, name) for e in episodes])  # noqa: E731
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  replay = torch_sac.NumpyReplay(cat("observation"), cat("action"), cat("dense_reward"),
                                 cat("next_observation"), cat("terminal"), device=device)
  torch.manual_seed(0)
  agent = torch_sac.TorchSAC(OBS, ACT, device=device)

  default_threads = torch.get_num_threads()
  thread_settings = sorted({default_threads, 1})

  def torch_call(threads):
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(updates_per_call):
      loss = agent.update(replay.sample(256))
    float(loss)  # waits for the device
    return time.perf_counter() - start

  state, _ = _time_jax(state, train, buffer)  # compile + warm-up
  rrd_state, _ = _time_jax(rrd_state, rrd_train, buffer)
  for threads in thread_settings:
    torch_call(threads)
  jax_times, rrd_times = [], []
  torch_times = {threads: [] for threads in thread_settings}
  for _ in range(repeats):
    state, elapsed = _time_jax(state, train, buffer)
    jax_times.append(elapsed)
    for threads in thread_settings:  # PyTorch's best thread count counts (oversubscribed
      time.sleep(0.05)               # intra-op threads can be far slower on a busy machine)
      torch_times[threads].append(torch_call(threads))
    time.sleep(0.05)
    rrd_state, elapsed = _time_jax(rrd_state, rrd_train, buffer)
    rrd_times.append(elapsed)
  torch.set_num_threads(default_threads)
  jax_rate = updates_per_call / statistics.median(jax_times)
  torch_rates = {t: updates_per_call / statistics.median(v) for t, v in torch_times.items()}
  torch_threads = max(torch_rates, key=torch_rates.get)
  torch_rate = torch_rates[torch_threads]
  return {"updates_per_call": updates_per_call, "repeats": repeats,
          "torch_version": torch.__version__, "torch_device": device,
          "jax_backend": jax.default_backend(), "torch_threads": torch_threads,
          "torch_updates_per_s_by_threads": {str(t): round(r, 1) for t, r in torch_rates.items()},
          "jax_updates_per_s": round(jax_rate, 1), "torch_updates_per_s": round(torch_rate, 1),
          "speedup": round(jax_rate / torch_rate, 2),
          "jax_rrd_sac_updates_per_s": round(updates_per_call / statistics.median(rrd_times), 1)}


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
  result["loop"] = loop_throughput(quick)
  result["env_steps_per_s"] = result["loop"]["env_steps_per_s"]
  return result


def main():
  common.benchmark_main("sac", run, __doc__)


if __name__ == "__main__":
  main()
