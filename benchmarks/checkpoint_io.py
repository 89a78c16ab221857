"""Checkpoint size and save/restore time of a config's reward model (params + Adam state).

python -m benchmarks.checkpoint_io [--config configs/libero_rrd.py[:VARIANT]] [--repeats 5]
  [--smoke] [--out RESULT.json]

Times a blocking save (async save + wait), the time the training loop is blocked by an async save,
and a restore, each as the median of --repeats, into a temporary directory (--smoke: one repeat).
"""

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time

import jax
import numpy as np

from benchmarks import common
from rrd_jax.config import loading
from rrd_jax.run import checkpoint
from rrd_jax.train import step as step_lib


def directory_bytes(path):
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default=loading.DEFAULT_CONFIG_FILE)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--smoke", action="store_true", help="one repeat (checks that it runs)")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  if args.smoke:
    args.repeats = 1
  path, _, variant = args.config.partition(":")
  config = loading.load_config(path, variant)
  state = step_lib.create_train_state(config, 1, 8, 7, rng=jax.random.PRNGKey(0))  # LIBERO sizes
  # Random values everywhere (as after training): zeros in a fresh Adam state would compress away.
  leaves, treedef = jax.tree.flatten(state)
  rng = np.random.default_rng(0)
  state = jax.tree.unflatten(treedef, [
      rng.normal(size=x.shape).astype(x.dtype) if hasattr(x, "dtype") and x.dtype.kind == "f" else x
      for x in leaves])
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  blocking, blocked, restoring, size = [], [], [], 0
  for repeat in range(args.repeats):
    directory = tempfile.mkdtemp()
    try:
      checkpointer = checkpoint.Checkpointer(directory, keep=1)
      start = time.perf_counter()
      checkpointer.save(1, checkpoint.train_state_items(state), {"repeat": repeat})
      blocked.append(time.perf_counter() - start)
      checkpointer.steps.wait_until_finished()
      blocking.append(time.perf_counter() - start)
      checkpointer.close()
      size = directory_bytes(directory)
      start = time.perf_counter()
      restored, _ = checkpoint.restore_train_state(directory, state)
      jax.block_until_ready(restored.params)
      restoring.append(time.perf_counter() - start)
    finally:
      shutil.rmtree(directory)
  result = {
      "config": args.config, "machine": f"{platform.processor() or platform.machine()}, "
                                        f"{os.cpu_count()} cores, {jax.default_backend()}",
      "params": int(num_params), "checkpoint_bytes": int(size),
      "save_s_median": statistics.median(blocking),
      "save_blocking_loop_s_median": statistics.median(blocked),
      "restore_s_median": statistics.median(restoring), "repeats": args.repeats,
  }
  common.emit(result, args.out)


if __name__ == "__main__":
  main()
