"""Part b of benchmarks/accelerator.py without TensorFlow: the generated dataset's episodes rendered
in memory by the embedded generator's own numpy code (rrd_jax/data/scenes.py generate_episode),
behind the part of pipeline.EpisodeLoader's interface that the device cache reads."""

import os
import types

import numpy as np

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
