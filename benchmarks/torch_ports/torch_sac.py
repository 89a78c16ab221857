"""A PyTorch SAC of rrd_jax.rl.sac's sizes and math, for benchmarks/sac.py, in three forms.

Twin critics and a tanh-Gaussian actor (MLP 256-256, log-std clipped to [-20, 2]), learned
temperature, polyak averaging, Adam; one update = critic step, actor step (updated critics),
temperature step, polyak, as in rrd_jax/rl/sac.py.

The actor step computes Q with the critics' parameters detached (torch.func.functional_call), so
the actor loss backpropagates through the critics into the action only and leaves the critics'
.grad untouched: the gradients it used to accumulate there were wasted work (the critic optimizer
zeroes them before its own step), so the update's result is the same without them
(`freeze_critics_in_actor=False` gives the old behaviour, for the tests).

Forms the benchmark times (`make_step`):
  eager:            `NumpyReplay`: NumPy indices on the host, torch.from_numpy(...).to(device) per
                    update, then the eager update -- the way a PyTorch SAC usually is written.
  eager, on device: `DeviceReplay`: the transitions live on the device as torch tensors and
                    torch.randint on the device draws each batch (no host round trip), eager update.
  compiled:         `DeviceReplay` sampling plus the whole update (losses, backward passes, the three
                    Adam steps, polyak) under torch.compile.
  CUDA graphs (GPU only): torch.compile(mode="reduce-overhead"), and a whole-step capture with
                    torch.cuda.graph (capturable Adam; sampling, update and optimizer steps replayed
                    as one graph).
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


def clear_grads(optimizer):
  """optimizer.zero_grad(set_to_none=True), in a form torch.compile traces without a graph break."""
  for group in optimizer.param_groups:
    for param in group["params"]:
      param.grad = None


class TorchSAC:
  def __init__(self, obs_size, action_size, hidden_sizes=(256, 256), lr=3e-4, gamma=0.99,
               polyak=0.995, init_alpha=1.0, device="cpu", freeze_critics_in_actor=True,
               capturable=False):
    self.actor = mlp(obs_size, hidden_sizes, 2 * action_size).to(device)
    self.critics = nn.ModuleList([mlp(obs_size + action_size, hidden_sizes, 1)
                                  for _ in range(2)]).to(device)
    self.targets = nn.ModuleList([mlp(obs_size + action_size, hidden_sizes, 1)
                                  for _ in range(2)]).to(device)
    self.targets.load_state_dict(self.critics.state_dict())
    for param in self.targets.parameters():
      param.requires_grad_(False)
    self.log_alpha = torch.tensor(math.log(init_alpha), requires_grad=True, device=device)
    # capturable=True keeps Adam's step counts on the device, as a CUDA graph capture needs.
    adam = dict(lr=lr, capturable=True) if capturable else dict(lr=lr)
    self.actor_opt = torch.optim.Adam(self.actor.parameters(), **adam)
    self.critic_opt = torch.optim.Adam(self.critics.parameters(), **adam)
    self.alpha_opt = torch.optim.Adam([self.log_alpha], **adam)
    self.gamma, self.polyak, self.target_entropy = gamma, polyak, -float(action_size)
    self.action_size = action_size
    self.freeze_critics_in_actor = freeze_critics_in_actor

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

  def frozen_q_values(self, obs, action):
    """Q_i(obs, action) with the critics' parameters as constants: gradients reach `action` only."""
    x = torch.cat([obs, action], -1)
    return torch.stack([
        torch.func.functional_call(c, {n: p.detach() for n, p in c.named_parameters()}, (x,))[:, 0]
        for c in self.critics])

  def critic_step(self, obs, action, reward, next_obs, terminal, alpha):
    with torch.no_grad():
      next_action, next_log_prob = self.sample(next_obs)
      next_q = self.q_values(self.targets, next_obs, next_action).min(0).values
      target = reward + self.gamma * (1 - terminal) * (next_q - alpha * next_log_prob)
    critic_loss = (self.q_values(self.critics, obs, action) - target).pow(2).mean(1).sum()
    clear_grads(self.critic_opt)
    critic_loss.backward()
    self.critic_opt.step()
    return critic_loss

  def actor_loss(self, obs, alpha):
    """(actor loss, log pi(a|s)) with a ~ pi(s) against the (updated) critics."""
    new_action, log_prob = self.sample(obs)
    if self.freeze_critics_in_actor:
      q_new = self.frozen_q_values(obs, new_action)
    else:  # the old form: the backward pass also fills the critics' .grad (never used)
      q_new = self.q_values(self.critics, obs, new_action)
    return (alpha * log_prob - q_new.min(0).values).mean(), log_prob

  def actor_step(self, obs, alpha):
    actor_loss, log_prob = self.actor_loss(obs, alpha)
    clear_grads(self.actor_opt)
    actor_loss.backward()
    self.actor_opt.step()
    return actor_loss, log_prob

  def alpha_step(self, log_prob):
    alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
    clear_grads(self.alpha_opt)
    alpha_loss.backward()
    self.alpha_opt.step()
    return alpha_loss

  def polyak_step(self):
    with torch.no_grad():
      for target_param, param in zip(self.targets.parameters(), self.critics.parameters()):
        target_param.mul_(self.polyak).add_(param, alpha=1.0 - self.polyak)

  def update(self, batch):
    """One SAC update on batch = (obs, action, reward, next_obs, terminal).

    Returns the detached losses [critic, actor, alpha] as one tensor (on the device).
    """
    obs, action, reward, next_obs, terminal = batch
    alpha = self.log_alpha.exp().detach()
    critic_loss = self.critic_step(obs, action, reward, next_obs, terminal, alpha)
    actor_loss, log_prob = self.actor_step(obs, alpha)
    alpha_loss = self.alpha_step(log_prob)
    self.polyak_step()
    return torch.stack([critic_loss.detach(), actor_loss.detach(), alpha_loss.detach()])

  def parameters(self):
    """Every learned or tracked tensor, in a fixed order (actor, critics, targets, log_alpha)."""
    return [*self.actor.parameters(), *self.critics.parameters(), *self.targets.parameters(),
            self.log_alpha]


class NumpyReplay:
  """Transitions in NumPy arrays; `sample` returns torch tensors of a uniform random batch,
  indexed on the host and copied to `device` per call."""

  def __init__(self, obs, action, reward, next_obs, terminal, seed=0, device="cpu"):
    self.arrays = (obs, action, reward, next_obs, terminal)
    self.rng = np.random.default_rng(seed)
    self.device = device

  def sample(self, batch_size):
    index = self.rng.integers(0, len(self.arrays[0]), batch_size)
    return tuple(torch.from_numpy(a[index]).to(self.device) for a in self.arrays)


class DeviceReplay:
  """Transitions held on `device` as torch tensors; `sample` draws the batch indices with
  torch.randint on the device (torch's global generator for that device, so torch.manual_seed
  seeds it, and torch.compile / CUDA graphs can trace it) and gathers there: no host round trip."""

  def __init__(self, obs, action, reward, next_obs, terminal, device="cpu"):
    self.tensors = tuple(torch.as_tensor(np.asarray(a, np.float32), device=device)
                         for a in (obs, action, reward, next_obs, terminal))
    self.size = self.tensors[0].shape[0]
    self.device = torch.device(device)

  def sample_indices(self, batch_size):
    return torch.randint(0, self.size, (batch_size,), device=self.device)

  def sample(self, batch_size):
    index = self.sample_indices(batch_size)
    return tuple(t.index_select(0, index) for t in self.tensors)


def make_step(agent, replay, batch_size=256):
  """step() -> losses [3]: draw one batch from `replay` and run one update of `agent`."""
  def step():
    return agent.update(replay.sample(batch_size))
  return step


def compile_step(step, mode=None):
  """torch.compile of a step (mode None = torch's default mode)."""
  return torch.compile(step, mode=mode) if mode else torch.compile(step)


def cuda_graph_step(step, warmup=3):
  """Captures step() (sampling, update, optimizer steps) as one CUDA graph; returns replay().

  The agent must use capturable Adam (TorchSAC(..., capturable=True)) and a DeviceReplay on CUDA.
  The warm-up updates run on a side stream first, as torch.cuda.graph requires; they are real
  updates of the agent. replay() returns the losses tensor the graph writes (the same tensor each
  call: read it before the next replay).
  """
  stream = torch.cuda.Stream()
  stream.wait_stream(torch.cuda.current_stream())
  with torch.cuda.stream(stream):
    for _ in range(warmup):
      step()
  torch.cuda.current_stream().wait_stream(stream)
  graph = torch.cuda.CUDAGraph()
  with torch.cuda.graph(graph):
    losses = step()

  def replay():
    graph.replay()
    return losses
  return replay
