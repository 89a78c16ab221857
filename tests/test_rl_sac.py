"""SAC update math against a NumPy computation, and N fused (scanned) steps against N single ones."""

import jax
import jax.numpy as jnp
import numpy as np

from rrd_jax.rl import learner, population, sac
from tests.rl_helpers import filled_buffer, make_episode, online_config

OBS, ACT, BATCH = 3, 2, 5
HP = sac.SACParams(action_size=ACT, hidden_sizes=(4,), gamma=0.9, polyak=0.995, init_alpha=0.7,
                   target_entropy=-ACT, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-2)


def np_mlp(layers, x):
  """layers: [(kernel, bias)]; ReLU between layers."""
  for i, (kernel, bias) in enumerate(layers):
    x = x @ kernel + bias
    if i < len(layers) - 1:
      x = np.maximum(x, 0.0)
  return x


def np_layers(tree, index=None):
  dense = tree["params"]["ensemble"]["MLP_0"] if index is not None else tree["params"]["MLP_0"]
  pick = (lambda a: np.asarray(a[index], np.float64)) if index is not None else (
      lambda a: np.asarray(a, np.float64))
  return [(pick(dense[f"Dense_{i}"]["kernel"]), pick(dense[f"Dense_{i}"]["bias"]))
          for i in range(len(dense))]


def np_q(critic_params, obs, act):
  x = np.concatenate([obs, act], -1)
  return np.stack([np_mlp(np_layers(critic_params, i), x)[:, 0] for i in range(2)])  # [2, B]


def np_policy(actor_params, obs, noise):
  """tanh-Gaussian sample and its log-probability, written out directly."""
  out = np_mlp(np_layers(actor_params), obs)
  mean, log_std = out[:, :ACT], np.clip(out[:, ACT:], -20.0, 2.0)
  std = np.exp(log_std)
  u = mean + std * noise
  a = np.tanh(u)
  gaussian = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
  return a, np.sum(gaussian - np.log(1.0 - a**2), axis=-1)


def make_batch(seed=0):
  rng = np.random.default_rng(seed)
  return {"observation": rng.normal(size=(BATCH, OBS)).astype(np.float32),
          "action": rng.uniform(-0.9, 0.9, (BATCH, ACT)).astype(np.float32),
          "reward": rng.normal(size=BATCH).astype(np.float32),
          "next_observation": rng.normal(size=(BATCH, OBS)).astype(np.float32),
          "terminal": np.asarray([0, 1, 0, 0, 1], np.float32)}


def test_update_matches_numpy():
  state = sac.create(HP, OBS, jax.random.PRNGKey(3))
  # Make the target critics differ from the critics so the min-of-targets is exercised.
  state = state.replace(target_critic_params=jax.tree.map(lambda p: p * 0.5 + 0.1,
                                                          state.critic.params))
  batch, key = make_batch(), jax.random.PRNGKey(7)
  new, metrics = jax.jit(sac.update, static_argnums=1)(state, HP, batch, key)
  key_target, key_actor = jax.random.split(key)
  noise_target = np.asarray(jax.random.normal(key_target, (BATCH, ACT)), np.float64)
  noise_actor = np.asarray(jax.random.normal(key_actor, (BATCH, ACT)), np.float64)
  alpha = 0.7
  b = {k: np.asarray(v, np.float64) for k, v in batch.items()}

  next_a, next_logp = np_policy(state.actor.params, b["next_observation"], noise_target)
  next_q = np_q(state.target_critic_params, b["next_observation"], next_a).min(0)
  target = b["reward"] + 0.9 * (1 - b["terminal"]) * (next_q - alpha * next_logp)
  q = np_q(state.critic.params, b["observation"], b["action"])
  critic_loss = np.sum(np.mean((q - target) ** 2, axis=1))
  np.testing.assert_allclose(metrics["critic_loss"], critic_loss, rtol=1e-4)
  np.testing.assert_allclose(metrics["q_mean"], q.mean(), rtol=1e-4, atol=1e-6)

  # The actor loss uses the critics as just updated; alpha is the pre-update value throughout.
  a, logp = np_policy(state.actor.params, b["observation"], noise_actor)
  q_new = np_q(new.critic.params, b["observation"], a).min(0)
  np.testing.assert_allclose(metrics["actor_loss"], np.mean(alpha * logp - q_new), rtol=1e-4)
  np.testing.assert_allclose(metrics["alpha"], alpha, rtol=1e-6)

  # alpha loss -mean(log_alpha (logp - |A|)); Adam's first step moves log_alpha by lr against
  # the sign of its gradient -mean(logp - |A|).
  gap = logp - ACT
  np.testing.assert_allclose(metrics["alpha_loss"], -np.log(alpha) * gap.mean(), rtol=1e-4)
  expected_log_alpha = np.log(alpha) - 1e-2 * np.sign(-gap.mean())
  np.testing.assert_allclose(new.temperature.params["log_alpha"], expected_log_alpha, rtol=1e-5)

  # Polyak: target <- 0.995 target + 0.005 critic (the updated critic).
  jax.tree.map(lambda t_new, t_old, c: np.testing.assert_allclose(
      t_new, 0.995 * np.asarray(t_old) + 0.005 * np.asarray(c), rtol=1e-5, atol=1e-7),
      new.target_critic_params, state.target_critic_params, new.critic.params)
  # Critic and actor both took a step.
  assert not np.allclose(new.critic.params["params"]["ensemble"]["MLP_0"]["Dense_0"]["kernel"],
                         state.critic.params["params"]["ensemble"]["MLP_0"]["Dense_0"]["kernel"])
  assert int(new.actor.step) == 1 and int(new.critic.step) == 1


def test_twin_critics_have_distinct_params():
  state = sac.create(HP, OBS, jax.random.PRNGKey(0))
  kernel = state.critic.params["params"]["ensemble"]["MLP_0"]["Dense_0"]["kernel"]
  assert kernel.shape == (2, OBS + ACT, 4) and not np.allclose(kernel[0], kernel[1])


def test_log_prob_matches_the_closed_form_at_saturation():
  """log pi(a) = sum_i [log N(eps_i; 0, 1) - log std_i - log(1 - tanh(u_i)^2)], u = mean + std eps,
  where 1 - tanh(u)^2 = sech(u)^2, so log(1 - tanh(u)^2) = 2 log 2 - 2 logaddexp(u, -u): exact
  even at |u| = 30, where tanh(u) rounds to +-1 (in float64 too) and the naive form is -inf.
  Rows: saturated both ways (u = +-30, tiny std) and moderate u (checked against the naive form)."""
  key = jax.random.PRNGKey(0)
  mean = np.asarray([[30.0, -30.0], [0.5, -1.0], [-30.0, 2.0]], np.float32)
  log_std = np.asarray([[-20.0, -20.0], [-1.0, 0.3], [-20.0, -0.5]], np.float32)
  action, log_prob = sac.tanh_gaussian_sample(jnp.asarray(mean), jnp.asarray(log_std), key)
  noise = np.asarray(jax.random.normal(key, mean.shape), np.float64)  # the sampler's own draw
  u = mean.astype(np.float64) + np.exp(log_std.astype(np.float64)) * noise
  log_det = 2 * np.log(2.0) - 2 * np.logaddexp(u, -u)
  moderate = np.abs(u) < 5
  np.testing.assert_allclose(log_det[moderate], np.log(1 - np.tanh(u[moderate]) ** 2), rtol=1e-12)
  gaussian = -0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi)
  expected = np.sum(gaussian - log_det, axis=-1)  # [152.02, -0.0875, 78.34]
  assert np.isfinite(np.asarray(log_prob)).all()
  # Measured |float32 - float64| = 2.5e-7, 1.2e-7, 1.4e-6 per row; the bound is a few float32
  # ulps (one ulp is 1.5e-5 at 152, 7.6e-6 at 78); a wrong term or sign is off by >= 0.1.
  np.testing.assert_allclose(log_prob, expected, rtol=5e-7, atol=1e-6)
  np.testing.assert_allclose(action, np.tanh(u), rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(action)[0], [1.0, -1.0])


def test_scan_of_n_steps_equals_n_single_steps(repo_root):
  config = online_config(repo_root, **{"reward.kind": "rrd", "sac.hidden_sizes": (8,),
                                       "rrd.hidden_sizes": (8,), "sac.batch_size": 16,
                                       "rrd.sample_size": 4, "rrd.episodes_per_batch": 2,
                                       "env.max_episode_steps": 20})
  hp = sac.SACParams.from_config(config.sac, ACT)
  buffer = filled_buffer([make_episode(t, seed=t) for t in (7, 12, 20, 3)], capacity=64)
  buffers, kinds = population.stack([buffer]), jnp.zeros(1, jnp.int32)  # a population of one
  init = lambda: learner.create_members(config, hp, OBS, [1])  # noqa: E731
  single = learner.make_train_step(config, hp, ("rrd",))
  state = init()
  for _ in range(4):
    state, _ = single(state, buffers, kinds)
  fused, metrics = learner.make_train_steps(config, hp, ("rrd",), 4)(init(), buffers, kinds)
  assert int(fused.updates[0]) == 4 and np.isfinite(metrics["rrd_loss"][0])
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(fused), strict=True):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)
