"""rrd_jax: Randomized Return Decomposition (RRD) reward learning in JAX/Flax."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO lines off the console.

from rrd_jax.util import quiet_start  # pylint: disable=wrong-import-position

quiet_start.install()  # ... and the two lines its import prints regardless

__version__ = "0.1.0"


def __getattr__(name):
  """rrd_jax.RewardModel, imported on first use (it loads JAX and the checkpoint machinery)."""
  if name == "RewardModel":
    from rrd_jax.infer.reward_model import RewardModel  # pylint: disable=import-outside-toplevel
    return RewardModel
  raise AttributeError(f"module 'rrd_jax' has no attribute {name!r}")
