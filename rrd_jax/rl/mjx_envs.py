"""Batches of MuJoCo tasks simulated in MJX and stepped inside jit (config env.backend = "mjx").

The same semantics as envs.py's gymnasium batch, as pure functions of an `EnvState` with a
leading env axis [N]:
- actions arrive in [-1, 1]^A and are rescaled to the actuators' ctrlrange (gymnasium's
  RescaleAction); one env step is the task's frame_skip MJX steps (mjx_tasks.py);
- episodic reward: every step's reward is 0 but the last's, which is the episode's dense sum;
  the dense per-step reward stays in the transition for the `dense` oracle and evaluation;
- an episode ends when the task terminates (terminal = 1) or at max_episode_steps (a time-out:
  done but terminal = 0, SAC bootstraps through it);
- a step whose simulation diverges (a non-finite observation or reward; MuJoCo C would reset its
  data and warn) is a terminal with a zero observation and reward, never a NaN in the buffer;
- an env whose episode ended restarts from a fresh draw of the task's reset distribution (its
  own key, split on every reset) in the same step, so `observation` is the next episode's first
  while the transition's `next_observation` is the last one of the finished episode.
"""

import flax
import jax
import jax.numpy as jnp
from mujoco import mjx

from rrd_jax.rl import mjx_tasks


@flax.struct.dataclass
class EnvState:
  data: mjx.Data  # [N] batched
  observation: jax.Array  # [N, O]
  steps: jax.Array  # [N] int32 steps taken in the running episode
  episode_return: jax.Array  # [N] dense return of the running episode so far
  key: jax.Array  # [N] each env's key for its next reset


class EnvBatch:
  """`name`'s task in MJX: reset(keys [N]) -> EnvState; step(state, actions [N, A]) ->
  (state, transition of [N] arrays). Both are pure: call them inside jit."""

  def __init__(self, name, max_episode_steps):
    self.task = mjx_tasks.make_task(name)
    self.max_episode_steps = max_episode_steps
    self.model = mjx.put_model(self.task.model)
    self._template = mjx.make_data(self.model)
    low, high = mjx_tasks.action_bounds(self.task.model)
    self._low, self._high = jnp.asarray(low), jnp.asarray(high)
    self.action_size = len(low)
    self.observation_size = int(jax.eval_shape(self._reset_one, jax.random.PRNGKey(0))[1].shape[0])

  def _reset_one(self, key):
    qpos, qvel = self.task.reset(key)
    data = mjx.forward(self.model, self._template.replace(qpos=qpos, qvel=qvel))
    return data, self.task.observe(data)

  def reset(self, keys):
    """Every env restarted: keys [N] seed their first episodes (and, split, the later ones)."""
    keys, first = jax.vmap(jax.random.split, out_axes=1)(keys)
    data, observation = jax.vmap(self._reset_one)(first)
    size = keys.shape[0]
    return EnvState(data=data, observation=observation, steps=jnp.zeros(size, jnp.int32),
                    episode_return=jnp.zeros(size, jnp.float32), key=keys)

  def _physics(self, data, action):
    ctrl = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
    after = jax.lax.fori_loop(0, self.task.frame_skip, lambda _, d: mjx.step(self.model, d),
                              data.replace(ctrl=ctrl))
    if self.task.contact_forces:
      after = mjx.rne_postconstraint(self.model, after)
    return after, ctrl

  def step(self, state, actions):
    """One env step of every env; returns (state, transition): observation, action,
    next_observation, reward (episodic), dense_reward, terminal, done, step_in_episode and
    episode_return (the running dense return including this step), each [N, ...]."""
    data, ctrl = jax.vmap(self._physics)(state.data, actions)
    dense = jax.vmap(self.task.reward)(state.data, data, ctrl).astype(jnp.float32)
    next_observation = jax.vmap(self.task.observe)(data)
    # A simulation that diverged (non-finite state) ends its episode as a terminal, with zeros
    # in place of the non-finite values, so nothing non-finite reaches the replay buffer.
    diverged = ~(jnp.all(jnp.isfinite(next_observation), -1) & jnp.isfinite(dense))
    next_observation = jnp.where(diverged[:, None], 0.0, next_observation)
    dense = jnp.where(diverged, 0.0, dense)
    terminated = jax.vmap(self.task.terminated)(data) | diverged
    steps = state.steps + 1
    done = terminated | (steps >= self.max_episode_steps)
    episode_return = state.episode_return + dense
    transition = {"observation": state.observation, "action": actions,
                  "next_observation": next_observation,
                  "reward": jnp.where(done, episode_return, 0.0), "dense_reward": dense,
                  "terminal": terminated.astype(jnp.float32), "done": done,
                  "step_in_episode": state.steps, "episode_return": episode_return}
    state = EnvState(data=data, observation=next_observation, steps=steps,
                     episode_return=episode_return, key=state.key)
    state = jax.lax.cond(jnp.any(done), lambda s: self._restart(s, done), lambda s: s, state)
    return state, transition

  def _restart(self, state, done):
    """The envs flagged in `done` restarted from fresh reset draws."""
    keys, draws = jax.vmap(jax.random.split, out_axes=1)(state.key)
    fresh = self.reset(draws)

    def pick(new, old):
      return jnp.where(done.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)

    return EnvState(data=jax.tree.map(pick, fresh.data, state.data),
                    observation=pick(fresh.observation, state.observation),
                    steps=jnp.where(done, 0, state.steps),
                    episode_return=jnp.where(done, 0.0, state.episode_return),
                    key=jnp.where(done[:, None], keys, state.key))
