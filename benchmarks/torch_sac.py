"""A straightforward PyTorch SAC of rrd_jax.rl.sac's sizes and math, for benchmarks/sac.py.

Twin critics and a tanh-Gaussian actor (MLP 256-256, log-std clipped to [-20, 2]), learned
temperature, polyak averaging, Adam; one update = critic step, actor step (updated critics),
temperature step, polyak, as in rrd_jax/rl/sac.py. Batches are drawn from a NumPy replay buffer
with NumPy indices and handed over with torch.from_numpy (and .to(device) on a GPU), the way a
PyTorch SAC usually is.
"""

import math

import numpy as np
import torch
from torch import nn


def mlp(in_size, hidden_sizes, out_size):
  layers, size = [], in_size
  for hidden in hidden_sizes:
    layers += [nn.Linear(size, hidden), nn.ReLU()]
    size = hidden
  return nn.Sequential(*layers, nn.Linear(size, out_size))


class TorchSAC:
  def __init__(self, obs_size, action_size, hidden_sizes=(256, 256), lr=3e-4, gamma=0.99,
               polyak=0.995, init_alpha=1.0, device="cpu"):
    self.actor = mlp(obs_size, hidden_sizes, 2 * action_size).to(device)
    self.critics = nn.ModuleList([mlp(obs_size + action_size, hidden_sizes, 1)
                                  for _ in range(2)]).to(device)
    self.targets = nn.ModuleList([mlp(obs_size + action_size, hidden_sizes, 1)
                                  for _ in range(2)]).to(device)
    self.targets.load_state_dict(self.critics.state_dict())
    self.log_alpha = torch.tensor(math.log(init_alpha), requires_grad=True, device=device)
    self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
    self.critic_opt = torch.optim.Adam(self.critics.parameters(), lr=lr)
    self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
    self.gamma, self.polyak, self.target_entropy = gamma, polyak, -float(action_size)
    self.action_size = action_size

  def sample(self, obs):
    mean, log_std = self.actor(obs).chunk(2, dim=-1)
    log_std = log_std.clamp(-20.0, 2.0)
    noise = torch.randn_like(mean)
    pre_tanh = mean + log_std.exp() * noise
    log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
                - 2.0 * (math.log(2.0) - pre_tanh - nn.functional.softplus(-2.0 * pre_tanh)))
    return torch.tanh(pre_tanh), log_prob.sum(-1)

  @staticmethod
  def q_values(critics, obs, action):
    x = torch.cat([obs, action], -1)
    return torch.stack([c(x)[:, 0] for c in critics])

  def update(self, batch):
    obs, action, reward, next_obs, terminal = batch
    alpha = self.log_alpha.exp().detach()
    with torch.no_grad():
      next_action, next_log_prob = self.sample(next_obs)
      next_q = self.q_values(self.targets, next_obs, next_action).min(0).values
      target = reward + self.gamma * (1 - terminal) * (next_q - alpha * next_log_prob)
    critic_loss = (self.q_values(self.critics, obs, action) - target).pow(2).mean(1).sum()
    self.critic_opt.zero_grad(set_to_none=True)
    critic_loss.backward()
    self.critic_opt.step()
    new_action, log_prob = self.sample(obs)
    actor_loss = (alpha * log_prob - self.q_values(self.critics, obs, new_action).min(0).values).mean()
    self.actor_opt.zero_grad(set_to_none=True)
    actor_loss.backward()
    self.actor_opt.step()
    alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
    self.alpha_opt.zero_grad(set_to_none=True)
    alpha_loss.backward()
    self.alpha_opt.step()
    with torch.no_grad():
      for target_param, param in zip(self.targets.parameters(), self.critics.parameters()):
        target_param.mul_(self.polyak).add_(param, alpha=1.0 - self.polyak)
    return critic_loss.detach()


class NumpyReplay:
  """Transitions in NumPy arrays; `sample` returns torch tensors of a uniform random batch."""

  def __init__(self, obs, action, reward, next_obs, terminal, seed=0, device="cpu"):
    self.arrays = (obs, action, reward, next_obs, terminal)
    self.rng = np.random.default_rng(seed)
    self.device = device

  def sample(self, batch_size):
    index = self.rng.integers(0, len(self.arrays[0]), batch_size)
    return tuple(torch.from_numpy(a[index]).to(self.device) for a in self.arrays)
