"""The gymnasium backend (config env.backend = "gymnasium", agent_state.py): environments step
on the host in an envs.EnvBatch (in subprocesses with env.subprocesses); every
train.env_steps_per_call env steps a jitted, member-vmapped policy acts (random actions during the
warm-up), the episodes that finished are appended to the device replay buffer (IRCR's heap is
kept on the host's side) and, past the warm-up, train.updates_per_call training steps run in one
jitted lax.scan (learner.py).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from rrd_jax.rl import agent_state, envs, replay
from rrd_jax.rl import learner as learner_lib


def _collect(env_batch, num_steps, env_steps, warmup_steps, act, size):
  """Steps `env_batch` (size members x n envs) for num_steps env steps per member (rounded up to
  n), with random actions before warmup_steps and act(observations, env_steps) after. Returns
  ([finished episodes] per member, env_steps after)."""
  num_envs = len(env_batch.observations) // size
  finished = [[] for _ in range(size)]
  for _ in range(-(-num_steps // num_envs)):
    if env_steps < warmup_steps:
      actions = env_batch.random_actions()
    else:
      actions = act(env_batch.observations, env_steps)
    for episode in env_batch.step(actions)[0]:
      finished[episode.env_index // num_envs].append(episode)
    env_steps += num_envs
  return finished, env_steps


class Evaluator:
  """eval.episodes episodes of the deterministic policy per member, in one env batch; logs
  eval/return (true dense) per member and redraws its learning curve."""

  def __init__(self, config, pop, run, exploit, action_size):
    self.pop, self.run, self.exploit, self.action_size = pop, run, exploit, action_size
    self.episodes = config.eval.episodes
    self.batch = envs.EnvBatch(config.env.name, config.env.max_episode_steps,
                               [0] * (pop.size * self.episodes), config.env.subprocesses)

  def __call__(self, actor, env_steps, episodes):
    size = self.pop.size

    def policy(obs):  # [M * episodes, O] -> [M * episodes, A]
      by_member = obs.reshape((size, -1) + obs.shape[1:])
      return np.asarray(self.exploit(actor, by_member)).reshape(len(obs), self.action_size)

    returns = envs.evaluate(self.batch, policy,
                            agent_state.eval_seeds(self.pop, self.episodes, env_steps))
    return agent_state.log_evaluation(self.pop, self.run, returns.reshape(size, -1), env_steps,
                                      episodes)

  def close(self):
    self.batch.close()


class HostAgent(agent_state.AgentBase):
  """What the loop advances on the gymnasium backend: AgentBase's learner, buffers and counters,
  plus the host's environments and the acting functions."""

  def __init__(self, config, pop, run, observation_size, action_size):
    super().__init__(config, pop, run, observation_size, action_size)
    self.insert = jax.jit(jax.vmap(replay.insert), donate_argnums=(0,))
    self.heap_put = jax.jit(replay.heap_put, donate_argnums=(0,))
    # IRCR's heap bookkeeping on the host (which slot a finished episode takes), as restored.
    self.heap_returns, self.heap_lengths = (np.array(x) for x in jax.device_get(
        (self.buffer.heap_return, self.buffer.heap_length)))
    self.train_calls = {}  # fused-step count -> jitted scan
    self.explore, exploit = (jax.jit(f) for f in agent_state.acting(self.state.sac.actor.apply_fn))
    self.env_batch = envs.EnvBatch(config.env.name, config.env.max_episode_steps,
                                   [m.seed * 100_003 + self.env_steps + j for m in pop.members
                                    for j in range(config.env.num_envs)], config.env.subprocesses)
    self.evaluator = Evaluator(config, pop, run, exploit, action_size)
    # Acting runs where its arguments live: with train.act_on_host on an accelerator, on a host
    # copy of the actor refreshed after every training call (no device round trip per env step).
    self.host = jax.devices("cpu")[0] if (config.train.act_on_host
                                          and jax.default_backend() != "cpu") else None
    self.act_keys = jax.device_put(jnp.stack([jax.random.fold_in(jax.random.PRNGKey(m.seed), 1)
                                              for m in pop.members]), self.host or pop.by_member)
    self.actor = self._policy_params()

  def _policy_params(self):
    return jax.device_put(self.state.sac.actor.params, self.host)

  def act(self, observations, step):  # [M * n, O] -> [M * n, A]
    by_member = observations.reshape((self.pop.size, -1) + observations.shape[1:])
    actions = self.explore(self.actor, by_member, self.act_keys, step)
    return np.asarray(actions).reshape(-1, self.action_size)

  def call(self, interval):
    """One call: collect train.env_steps_per_call env steps, store the finished episodes and
    (past the warm-up) run the fused training steps. Returns the env steps before the call."""
    config, before = self.config, self.env_steps
    num_steps = min(config.train.env_steps_per_call, config.train.total_env_steps - before)
    finished, self.env_steps = _collect(self.env_batch, num_steps, before,
                                        config.train.warmup_steps, self.act, self.pop.size)
    for block in replay.member_blocks(finished):
      self.buffer = self.insert(self.buffer, block)
    self._update_heaps(finished)
    self.episodes += sum(map(len, finished))
    for m, done in enumerate(finished):
      interval.episode_returns[m] += [e.episode_return for e in done]
    interval.env_steps += self.env_steps - before
    num_updates = self.num_updates(self.env_steps - before)
    if (self.env_steps >= config.train.warmup_steps and int(jnp.min(self.buffer.count)) > 0
        and num_updates > 0):
      if num_updates not in self.train_calls:
        self.train_calls[num_updates] = learner_lib.make_train_steps(config, self.hp,
                                                                     self.pop.kinds, num_updates)
      start = time.perf_counter()
      self.state, step_metrics = self.train_calls[num_updates](self.state, self.buffer,
                                                               self.pop.kind_ids)
      jax.block_until_ready(step_metrics)
      self.actor = self._policy_params()
      interval.update_time += time.perf_counter() - start
      interval.updates += num_updates
      interval.metrics.append(step_metrics)
    return before

  def _update_heaps(self, finished):
    """IRCR members: each finished episode enters the heap if it ranks among the top ones."""
    for m, (member, done) in enumerate(zip(self.pop.members, finished)):
      if member.kind != "ircr":
        continue
      for episode in done:
        slot = replay.heap_slot(self.heap_returns[m], self.heap_lengths[m], episode.episode_return)
        if slot is None:
          continue
        rows = replay.heap_rows(episode, self.config.env.max_episode_steps)
        self.buffer = self.heap_put(self.buffer, m, slot, rows)
        self.heap_returns[m, slot] = episode.episode_return
        self.heap_lengths[m, slot] = len(episode)

  def evaluate(self):
    with self.run.clock.excluded():  # keep evaluation out of the step timings
      return self.evaluator(self.actor, self.env_steps, self.episodes)

  def close(self):
    self.env_batch.close()
    self.evaluator.close()
