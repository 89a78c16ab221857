"""A PyTorch port of rrd_jax's pixel reward model, loss and optimiser (reward_step benchmark).

The same network as `rrd_jax.model.networks.RewardNet(kind="pixel")` with no optional inputs: conv
32x8x8/4, 64x4x4/2, 64x3x3/1 (VALID, ReLU) on the uint8 image normalised to [-1, 1], flattened and
concatenated with [state, action, state - next_state], MLP 256-256 ReLU, one scalar. The loss is
the reference "mean" form (per episode (mean_k pred - R/T)^2, averaged over episodes); Adam 3e-4.
Written the way a PyTorch user would (NCHW convolutions on oneDNN, C-H-W flatten order);
`load_jax_params` maps a flax parameter tree onto it (HWIO -> OIHW kernels, and the first dense
layer's rows permuted from H-W-C to C-H-W order) so both compute the same function.
"""

import numpy as np
import torch
from torch import nn


def conv_output_size(size):
  for kernel, stride in ((8, 4), (4, 2), (3, 1)):
    size = (size - kernel) // stride + 1
  return size


class TorchRewardNet(nn.Module):
  """[N, H, W, C] uint8 images + [N, P] state, next_state + [N, A] action -> [N] rewards."""

  def __init__(self, image_size, channels=3, state_dim=8, action_dim=7, hidden_sizes=(256, 256)):
    super().__init__()
    self.convs = nn.ModuleList([nn.Conv2d(channels, 32, 8, 4), nn.Conv2d(32, 64, 4, 2),
                                nn.Conv2d(64, 64, 3, 1)])
    self.feature_size = conv_output_size(image_size)
    width = 2 * state_dim + action_dim + 64 * self.feature_size**2
    self.dense = nn.ModuleList()
    for size in hidden_sizes:
      self.dense.append(nn.Linear(width, size))
      width = size
    self.head = nn.Linear(width, 1)

  def forward(self, image, state, next_state, action):
    x = image.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # NCHW view (channels-last strides)
    for conv in self.convs:
      x = torch.relu(conv(x))
    x = torch.cat([state, action, state - next_state, x.flatten(1)], dim=1)
    for layer in self.dense:
      x = torch.relu(layer(x))
    return self.head(x)[:, 0]


def rrd_mean_loss(pred, episode_returns, episode_lengths):
  """pred [B, K]; per episode (mean_k pred - R/T)^2, averaged over the B episodes."""
  return torch.mean(torch.square(pred.mean(dim=1) - episode_returns / episode_lengths))


class TorchTrainer:
  """One RRD train step (forward on B*K steps, mean-form loss, backward, Adam) on torch tensors."""

  def __init__(self, model, learning_rate=3e-4):
    self.model = model
    self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

  def loss(self, batch):
    b, k = batch["image"].shape[:2]
    flat = lambda name: batch[name].reshape((b * k,) + tuple(batch[name].shape[2:]))
    pred = self.model(flat("image"), flat("state"), flat("next_state"), flat("action"))
    return rrd_mean_loss(pred.reshape(b, k), batch["episode_return"], batch["episode_length"])

  def step(self, batch):
    self.optimizer.zero_grad(set_to_none=True)
    loss = self.loss(batch)
    loss.backward()
    self.optimizer.step()
    return loss


def trainer_from_flax(image_size, flax_params, compiled=False, device=None):
  """A TorchTrainer of a TorchRewardNet holding a flax RewardNet's params (load_jax_params), on
  `device` (None: the CPU), its model under torch.compile when `compiled`."""
  model = TorchRewardNet(image_size)
  load_jax_params(model, flax_params)
  if device is not None:
    model.to(device)
  return TorchTrainer(torch.compile(model) if compiled else model)


def to_torch_batch(batch):
  """A numpy RRD batch ([B, K, ...] leaves) -> the torch tensors `TorchTrainer` reads."""
  return {"image": torch.from_numpy(np.ascontiguousarray(batch["image"])),
          "state": torch.from_numpy(np.array(batch["state"], np.float32)),
          "next_state": torch.from_numpy(np.array(batch["next_state"], np.float32)),
          "action": torch.from_numpy(np.array(batch["action"], np.float32)),
          "episode_return": torch.from_numpy(np.array(batch["episode_return"], np.float32)),
          "episode_length": torch.from_numpy(np.array(batch["episode_length"], np.float32))}


def _dense_names(flax_params):
  return sorted((k for k in flax_params if k.startswith("Dense_")), key=lambda k: int(k[6:]))


def load_jax_params(model, flax_params):
  """Copies a flax RewardNet's params ({"params": ...} or the inner dict) into `model`."""
  params = flax_params.get("params", flax_params)
  trunk = params["image_trunk"]
  with torch.no_grad():
    for i, conv in enumerate(model.convs):
      kernel = np.array(trunk[f"Conv_{i}"]["kernel"]).transpose(3, 2, 0, 1)  # HWIO -> OIHW
      conv.weight.copy_(torch.from_numpy(kernel.copy()))
      conv.bias.copy_(torch.from_numpy(np.array(trunk[f"Conv_{i}"]["bias"])))
    layers = list(model.dense) + [model.head]
    for i, (name, layer) in enumerate(zip(_dense_names(params), layers)):
      kernel = np.asarray(params[name]["kernel"])  # [in, out]
      if i == 0:
        kernel = _hwc_rows_to_chw(kernel, model.feature_size, layer.in_features)
      layer.weight.copy_(torch.from_numpy(kernel.T.copy()))
      layer.bias.copy_(torch.from_numpy(np.array(params[name]["bias"])))


def _hwc_rows_to_chw(kernel, size, width):
  """Rows [low-dim..., trunk features in H-W-C order] -> [low-dim..., trunk in C-H-W order]."""
  lowdim = width - 64 * size * size
  trunk = kernel[lowdim:].reshape(size, size, 64, -1).transpose(2, 0, 1, 3)
  trunk = trunk.reshape(64 * size * size, -1)
  return np.concatenate([kernel[:lowdim], trunk])


def _chw_rows_to_hwc(kernel, size, width):
  lowdim = width - 64 * size * size
  trunk = kernel[lowdim:].reshape(64, size, size, -1).transpose(1, 2, 0, 3)
  trunk = trunk.reshape(64 * size * size, -1)
  return np.concatenate([kernel[:lowdim], trunk])


def grads_as_flax(model, flax_params):
  """The torch model's .grad tensors laid out like the flax param tree (for comparisons)."""
  params = flax_params.get("params", flax_params)
  out = {"image_trunk": {}}
  for i, conv in enumerate(model.convs):
    out["image_trunk"][f"Conv_{i}"] = {"kernel": conv.weight.grad.numpy().transpose(2, 3, 1, 0),
                                       "bias": conv.bias.grad.numpy()}
  layers = list(model.dense) + [model.head]
  for i, (name, layer) in enumerate(zip(_dense_names(params), layers)):
    kernel = layer.weight.grad.numpy().T
    if i == 0:
      kernel = _chw_rows_to_hwc(kernel, model.feature_size, layer.in_features)
    out[name] = {"kernel": kernel, "bias": layer.bias.grad.numpy()}
  return out
