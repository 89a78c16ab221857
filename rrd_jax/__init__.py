"""rrd_jax: Randomized Return Decomposition (RRD) reward learning in JAX/Flax."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO lines off the console.

__version__ = "0.1.0"
