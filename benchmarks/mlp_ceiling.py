"""The state (mlp) model's ceiling on the touch data with the block in the state: the same network
(2 x 256 ReLU on [s, a, s - s']) fitted to the per-step rewards directly (supervised, MSE, Adam
3e-4, 256 random steps per update), scored like the generalisation benchmark (held-out
within-episode Pearson on the episodes data.eval_fraction=0.125 holds out of 200). If this reaches 0.9 and RRD does not, the
network can represent the reward and what is missing is RRD's signal for it (episode sums only).

python -m benchmarks.mlp_ceiling [--steps 5000] [--out RESULT.json]
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from benchmarks.generalisation import EPISODES
from rrd_jax.data import embedded, rlds

EVAL_FRACTION = 0.125


def episodes():
  """([(inputs [T, D], reward [T])], held-out mask) of the block_in_state touch dataset."""
  directory = embedded.build_embedded_dataset(common.BENCH_DIR, embedded.EmbeddedParams(
      num_episodes=EPISODES, min_length=30, max_length=60, image_size=64, block_in_state=True))
  builder = rlds.open_builder(directory)
  out, paths = [], []
  for episode in builder.as_dataset(split="train"):
    paths.append(episode["episode_metadata"]["file_path"].numpy().decode())
    steps = list(episode["steps"].as_numpy_iterator())
    state = np.stack([s["observation"]["state"] for s in steps])
    next_state = np.concatenate([state[1:], state[-1:]])
    action = np.stack([s["action"] for s in steps])
    out.append((np.concatenate([state, action, state - next_state], -1),
                np.asarray([s["reward"] for s in steps], np.float32)))
  return out, rlds.holdout_mask(paths, EVAL_FRACTION)


class StateModel(nn.Module):
  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.relu(nn.Dense(256)(x))
    return nn.Dense(1)(x)[..., 0]


def run(steps=5000):
  data, mask = episodes()
  train = [e for e, held in zip(data, mask) if not held]
  held_out = [e for e, held in zip(data, mask) if held]
  x, y = np.concatenate([e[0] for e in train]), np.concatenate([e[1] for e in train])
  model, optimiser = StateModel(), optax.adam(3e-4)
  params = model.init(jax.random.PRNGKey(0), x[:1])
  opt_state = optimiser.init(params)

  @jax.jit
  def update(params, opt_state, xb, yb):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean((model.apply(p, xb) - yb) ** 2))(params)
    updates, opt_state = optimiser.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  def within_pearson():
    values = [np.corrcoef(np.asarray(model.apply(params, xe)), ye)[0, 1]
              for xe, ye in held_out if ye.std() > 0]
    return float(np.mean(values))

  rng, curve = np.random.default_rng(0), []
  for step in range(1, steps + 1):
    rows = rng.integers(0, len(x), 256)
    params, opt_state, loss = update(params, opt_state, x[rows], y[rows])
    if step % 500 == 0:
      curve.append({"step": step, "within_pearson": within_pearson(), "train_mse": float(loss)})
  return {"episodes": len(data), "held_out": len(held_out), "updates": steps, "curve": curve}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  from benchmarks.run import machine_info  # pylint: disable=import-outside-toplevel
  common.emit({"machine": machine_info(), "mlp_ceiling": run(args.steps)}, args.out)


if __name__ == "__main__":
  main()
