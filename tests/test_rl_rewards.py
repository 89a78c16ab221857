"""Each reward kind on a hand-made replay buffer, and the buffer's episode bookkeeping."""

import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np
import pytest

from rrd_jax.rl import replay, rewards
from tests.rl_helpers import filled_buffer, make_episode

# Three episodes: returns 6 (T=3), 10 (T=4), -2 (T=2), dense rewards 1..T except the last.
EPISODES = [make_episode(3, seed=0), make_episode(4, seed=1),
            make_episode(2, dense=[-3.0, 1.0], terminal=True, seed=2)]


@pytest.fixture(scope="module")
def buffer():
  return filled_buffer(EPISODES, capacity=16)


def all_rows(buffer):
  """Every stored transition as a batch, in insertion order."""
  count = int(buffer.count)
  rows = {k: np.asarray(getattr(buffer, k))[:count] for k in (
      "observation", "action", "next_observation", "reward", "dense_reward", "terminal",
      "episode_length", "episode_return")}
  return rows


def test_buffer_bookkeeping(buffer):
  assert int(buffer.count) == 9 and int(buffer.num_episodes) == 3
  np.testing.assert_array_equal(buffer.episode_start[:9], [0, 0, 0, 3, 3, 3, 3, 7, 7])
  np.testing.assert_array_equal(buffer.episode_length[:9], [3, 3, 3, 4, 4, 4, 4, 2, 2])
  np.testing.assert_array_equal(buffer.episode_return[:9], [6, 6, 6, 10, 10, 10, 10, -2, -2])
  np.testing.assert_array_equal(buffer.terminal[:9], [0, 0, 0, 0, 0, 0, 0, 0, 1])
  assert float(buffer.return_min) == -2 and float(buffer.return_max) == 10


def rewards_of(kind, buffer, reward_fn=None):
  return np.asarray(rewards.transition_rewards(kind, all_rows(buffer), buffer.return_min,
                                               buffer.return_max, reward_fn))


def test_ircr_normalises_returns_by_buffer_min_max(buffer):
  expected = np.repeat([(6 + 2) / 12, 1.0, 0.0], [3, 4, 2])
  np.testing.assert_allclose(rewards_of("ircr", buffer), expected, rtol=1e-6)


def test_uniform_is_return_over_length(buffer):
  np.testing.assert_allclose(rewards_of("uniform", buffer), np.repeat([2.0, 2.5, -1.0], [3, 4, 2]))


def test_episodic_is_the_delayed_reward(buffer):
  np.testing.assert_array_equal(rewards_of("episodic", buffer), [0, 0, 6, 0, 0, 0, 10, 0, -2])


def test_dense_is_the_true_reward(buffer):
  np.testing.assert_array_equal(rewards_of("dense", buffer), [1, 2, 3, 1, 2, 3, 4, -3, 1])


@pytest.mark.parametrize("kind", ["rrd", "rrd_lrd"])
def test_rrd_kinds_use_the_reward_model(buffer, kind):
  def reward_fn(inputs):  # a stand-in model: sum of the action, minus the state change's sum
    return jnp.sum(inputs["action"], -1) - jnp.sum(inputs["state"] - inputs["next_state"], -1)

  rows = all_rows(buffer)
  expected = rows["action"].sum(-1) - (rows["observation"] - rows["next_observation"]).sum(-1)
  np.testing.assert_allclose(rewards_of(kind, buffer, reward_fn), expected, rtol=1e-5)


def test_sample_episodes_draws_whole_episodes_without_replacement(buffer):
  batch = jax.jit(replay.sample_episodes, static_argnums=(2, 3, 4))(
      buffer, jax.random.PRNGKey(0), 64, 3, 10)
  observation = np.asarray(buffer.observation)
  for i in range(64):
    length, ret = int(batch["episode_length"][i]), float(batch["episode_return"][i])
    start = {3: 0, 4: 3, 2: 7}[length]
    assert ret == {3: 6, 4: 10, 2: -2}[length]
    rows = [int(np.flatnonzero((observation == o).all(-1))[0]) for o in batch["observation"][i]]
    assert all(start <= r < start + length for r in rows)
    if length >= 3:
      assert len(set(rows)) == 3  # K <= T: without replacement
  # Length-proportional: the 4-step episode is drawn about 4/9 of the time.
  lengths = np.asarray(jax.jit(replay.sample_episodes, static_argnums=(2, 3, 4))(
      buffer, jax.random.PRNGKey(1), 4000, 2, 10)["episode_length"])
  np.testing.assert_allclose(np.mean(lengths == 4), 4 / 9, atol=0.03)


def test_wrapped_ring_samples_only_whole_episodes():
  """Capacity 8 after 3 + 4 + 2 + 3 steps: rows hold steps 4..11; episode 2 (steps 3..6) lost its
  first step, so neither RRD's episodes nor SAC's transitions are drawn from it: only episodes 3
  and 4, as the reference's FIFO, which evicts whole episodes, would hold."""
  episodes = EPISODES + [make_episode(3, dense=[5.0, 5.0, 5.0], seed=3)]
  buffer = filled_buffer(episodes, capacity=8)
  assert int(buffer.count) == 12
  batch = replay.sample_episodes(buffer, jax.random.PRNGKey(0), 200, 2, 10)
  assert set(np.asarray(batch["episode_return"]).tolist()) == {-2.0, 15.0}
  transitions = replay.sample_transitions(buffer, jax.random.PRNGKey(0), 400)
  assert set(np.asarray(transitions["episode_return"]).tolist()) == {-2.0, 15.0}


def _eval_with_reversed_scatters(closed, *args):
  """Evaluates a closed jaxpr with every scatter's updates applied in reverse order: of repeated
  indices the first update wins where XLA:CPU lets the last win (XLA leaves the order open)."""
  env = {}
  read = lambda v: v.val if isinstance(v, jax_core.Literal) else env[v]  # noqa: E731
  env.update(zip(closed.jaxpr.constvars, closed.consts))
  env.update(zip(closed.jaxpr.invars, args))
  for eqn in closed.jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    if eqn.primitive.name == "scatter":
      operand, indices, updates = invals
      # one scatter dimension, leading in both (x.at[i].set(v) with i of shape [N])
      assert indices.ndim == 2 and 0 not in eqn.params["dimension_numbers"].update_window_dims
      assert not eqn.params["indices_are_sorted"]
      outvals = [eqn.primitive.bind(operand, indices[::-1], updates[::-1], **eqn.params)]
    elif eqn.primitive.name in ("jit", "pjit"):
      outvals = _eval_with_reversed_scatters(eqn.params["jaxpr"], *invals)
    else:
      outvals = eqn.primitive.bind(*invals, **eqn.params)
      outvals = outvals if eqn.primitive.multiple_results else [outvals]
    env.update(zip(eqn.outvars, outvals))
  return [read(v) for v in closed.jaxpr.outvars]


@pytest.mark.parametrize("capacity,first", [(8, []), (8, [make_episode(5, seed=4)]), (16, [])])
def test_insert_does_not_depend_on_the_scatter_order(capacity, first):
  """A block with more valid rows than the capacity (12 into 8; 5 + 12 into 8 wraps twice) keeps
  its last `capacity` rows, and writes no ring row twice: with its scatters applied in reverse
  order, insert gives the same buffer (it did not when every row was written, earlier ones to be
  overwritten by later ones in the same scatter)."""
  episodes = EPISODES + [make_episode(3, dense=[5.0, 5.0, 5.0], seed=3)]  # 12 steps
  buffer = filled_buffer(first, capacity)
  block = replay.episodes_to_rows(episodes)[0]
  assert block["valid"].sum() == 12
  closed = jax.make_jaxpr(replay.insert)(buffer, block)
  in_order = replay.insert(buffer, block)
  reversed_order = jax.tree.unflatten(jax.tree.structure(buffer), _eval_with_reversed_scatters(
      closed, *jax.tree.leaves((buffer, block))))
  for name, got in zip(replay.ReplayBuffer.__dataclass_fields__, jax.tree.leaves(reversed_order)):
    np.testing.assert_array_equal(got, getattr(in_order, name), err_msg=name)
  # Both are the ring: global index g (first's steps, then the block's) at row g % capacity.
  observations = np.concatenate([e.observation for e in first + episodes])
  count = len(observations)
  assert int(in_order.count) == count and int(in_order.num_episodes) == len(first) + 4
  stored = np.arange(max(0, count - capacity), count)
  np.testing.assert_array_equal(np.asarray(in_order.observation)[stored % capacity],
                                observations[stored])

