"""Frames that do not decode: the pipeline names the shard, episode and step in one sentence, or
(data.skip_bad_episodes) the index check leaves the episode out and counts it; a stream that fails,
and one left open when the process exits, never keeps the process from exiting."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import pipeline, rlds
from rrd_jax.data.sampling import SamplerOptions
from rrd_jax.util.errors import UserError
from tests.helpers import ROOT, damage_frames

KEYS = rlds.FeatureKeys()


@pytest.fixture(scope="module")
def damaged(tiny_dataset_dir, tmp_path_factory):
  """A copy of the tiny dataset: every frame of one episode is garbage, and one frame (step 3) of
  another is a truncated JPEG. (dataset dir, {mode: (shard, file_path)})."""
  target = str(tmp_path_factory.mktemp("bad_frames") / "1.0.0")
  shutil.copytree(tiny_dataset_dir, target)
  shards = sorted(os.path.join(target, n) for n in os.listdir(target) if ".tfrecord-" in n)
  bad = {"garbage": (shards[1], damage_frames(shards[1], 1, "all", "garbage")),
         "truncated": (shards[2], damage_frames(shards[2], 0, [3], "truncated"))}
  return target, bad


def _loader(dataset_dir, **index_kwargs):
  builder = rlds.open_builder(dataset_dir)
  index = rlds.build_index(builder, KEYS, **index_kwargs)
  return pipeline.EpisodeLoader(builder, index, KEYS, ModelInputs(image_size=24))


def test_training_batches_name_the_episode_with_undecodable_frames(damaged):
  dataset_dir, bad = damaged
  loader = _loader(dataset_dir)
  shard, name = bad["garbage"]
  bad_id = loader.index.file_paths.index(name)
  good_ids = [i for i in range(len(loader.index)) if loader.index.file_paths[i] not in
              (bad["garbage"][1], bad["truncated"][1])]
  assert len(list(pipeline.train_batches(loader, good_ids, SamplerOptions(4, 3, seed=0),
                                         num_steps=3))) == 3
  stream = pipeline.train_batches(loader, [good_ids[0], bad_id], SamplerOptions(2, 3, seed=0),
                                  num_steps=3)
  with pytest.raises(UserError) as error:
    list(stream)
  message = str(error.value)
  assert f"episode {name} " in message and shard in message, message
  assert "undecodable frame at step" in message and "'steps/observation/image'" in message
  assert "Unknown image file format" in message and "data.skip_bad_episodes=True" in message
  assert "\n" not in message
  assert stream.gi_frame is None  # the generator is done: its tf.data iterator is released


def test_whole_episode_batches_name_the_first_bad_step(damaged):
  dataset_dir, bad = damaged
  loader = _loader(dataset_dir)
  shard, name = bad["truncated"]
  with pytest.raises(UserError) as error:
    list(pipeline.episode_step_batches(loader, [loader.index.file_paths.index(name)],
                                       batch_size=8))
  message = str(error.value)
  assert f"episode {name} " in message and shard in message, message
  assert "undecodable frame at step 3 of 'steps/observation/image'" in message
  assert "Invalid JPEG data" in message
  # the same episode through a batch that also holds good episodes before it
  order = [i for i in range(len(loader.index)) if loader.index.file_paths[i] != bad["garbage"][1]]
  with pytest.raises(UserError, match=f"episode {name} .*step 3 "):
    list(pipeline.episode_step_batches(loader, order, batch_size=16))


def test_skip_bad_episodes_decodes_every_frame_once_and_counts_the_bad_episodes(damaged,
                                                                                  tiny_dataset_dir):
  dataset_dir, bad = damaged
  builder = rlds.open_builder(dataset_dir)
  clean = rlds.build_index(rlds.open_builder(tiny_dataset_dir), KEYS)
  checked = rlds.build_index(builder, KEYS, skip_bad=True, frame_keys=[KEYS.image])
  assert checked.report.bad_frames == 2 and len(checked) == len(clean) - 2
  assert not {name for _, name in bad.values()} & set(checked.file_paths)
  assert "2 with undecodable frames" in checked.report.describe()
  # only the frames a run reads are checked; without skip_bad nothing is decoded
  for kwargs in ({"skip_bad": True, "frame_keys": [KEYS.wrist_image]},
                 {"frame_keys": [KEYS.image]}):
    index = rlds.build_index(builder, KEYS, **kwargs)
    assert index.report.bad_frames == 0 and len(index) == len(clean), kwargs
  # the kept episodes load
  loader = pipeline.EpisodeLoader(builder, checked, KEYS, ModelInputs(image_size=24))
  batches = list(pipeline.episode_step_batches(loader, np.arange(len(checked)), batch_size=64))
  assert sum(len(b["state"]) for b in batches) == int(checked.lengths.sum())


SCRIPT = textwrap.dedent("""
    import atexit, sys
    from rrd_jax.config.inputs import ModelInputs
    from rrd_jax.data import pipeline, rlds
    from rrd_jax.data.sampling import SamplerOptions
    from rrd_jax.util.errors import UserError
    if sys.argv[2] == "no_exit_close":  # without the safety net this process hangs at exit
      atexit.unregister(pipeline.close_open_streams)
    keys = rlds.FeatureKeys()
    builder = rlds.open_builder(sys.argv[1])
    loader = pipeline.EpisodeLoader(builder, rlds.build_index(builder, keys), keys,
                                    ModelInputs(image_size=24))
    ids = range(len(loader.index))
    try:
      list(pipeline.train_batches(loader, ids, SamplerOptions(8, 4, seed=0), num_steps=50))
    except UserError as e:
      print("named:", e, flush=True)
    good = [int(i) for i in sys.argv[3].split(",")]
    open_stream = pipeline.train_batches(loader, good, SamplerOptions(8, 4, seed=0))
    next(open_stream)  # left open, as the training loop's stream is when a save fails
    raise SystemExit(3)
""")


@pytest.mark.slow
def test_a_process_with_failed_and_open_streams_exits_at_once(damaged):
  """A stream that failed, and a training stream left open (its worker threads busy), as a failed
  run leaves them. (With "no_exit_close" the same script hangs in the open iterator's destructor
  at interpreter shutdown: checked by hand, it is not run here.)"""
  dataset_dir, bad = damaged
  index = rlds.build_index(rlds.open_builder(dataset_dir), KEYS)
  good = [str(i) for i, name in enumerate(index.file_paths) if name not in
          {name for _, name in bad.values()}]
  result = subprocess.run([sys.executable, "-c", SCRIPT, dataset_dir, "default", ",".join(good)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 3, result.stderr[-3000:]
  assert "named: episode" in result.stdout
