"""step.make_optimizer: plain Adam by default, decoupled weight decay (AdamW) when asked."""

import jax.numpy as jnp
import numpy as np

from rrd_jax.train import step as step_lib


def _update(weight_decay):
  tx = step_lib.make_optimizer(step_lib.OptimOptions(
      learning_rate=0.1, grad_clip_norm=0.0, weight_decay=weight_decay, schedule="constant",
      warmup_steps=0))
  params = {"w": jnp.full(3, 2.0)}
  updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)
  return np.asarray(updates["w"])


def test_weight_decay_shrinks_weights_by_lr_times_decay_when_the_gradient_is_zero():
  np.testing.assert_allclose(_update(0.0), 0.0)
  np.testing.assert_allclose(_update(0.5), -0.1 * 0.5 * 2.0, rtol=1e-6)  # -lr * wd * w
