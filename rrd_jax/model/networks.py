"""Reward networks r(s, a, s') -> scalar, chosen by `config.model.kind`.

- "pixel": the reference conv trunk (32x8x8/4, 64x4x4/2, 64x3x3/1) over the main camera image
  (optionally stacked with the frame difference o - o', optionally a second trunk on the wrist
  image), fused with proprio state, action and s - s' (and optionally a learned instruction
  embedding, concatenated and FiLM-modulating the first hidden layer) through an MLP 256-256 to
  one scalar.
- "mlp": the reference low-dimensional model, an MLP 256-256 on [s, a, s - s'].
model.low_dim_inputs chooses which of s, a and s - s' the model sees and model.state_dims which
dimensions of s (and s - s'); the default is all of them.
With normalize_inputs, s, a and s - s' are standardised by the training data's mean and std
(variables of the "input_stats" collection: set from the dataset, saved with the checkpoint, never
trained).
Inputs are dicts of per-step arrays with leading dims [..., ]: images uint8 [..., H, W, 3]
(normalised inside the model), state/next_state [..., P], action [..., A], instruction_id [...].
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from rrd_jax.config.schema import LOW_DIM_INPUTS, MODEL_KINDS

INPUT_STATS = "input_stats"  # the variable collection of the input statistics (never trained)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # schema.DTYPE_NAMES


def normalize_image(image, dtype):
  return image.astype(dtype) / 127.5 - 1.0


TRUNK_LAYERS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))  # (features, kernel size, stride), VALID
CONV_IMPLS = ("auto", "matmul", "xla")


def space_to_depth(x, block):
  """[..., H, W, C] -> [..., H/b, W/b, b*b*C] (H, W multiples of b), channels in (row, col, C)
  order."""
  *lead, height, width, channels = x.shape
  x = x.reshape(*lead, height // block, block, width // block, block, channels)
  x = jnp.swapaxes(x, -4, -3)  # [..., H/b, W/b, b, b, C]
  return x.reshape(*lead, height // block, width // block, block * block * channels)


def patches(x, size):
  """[..., H, W, C] -> [..., H-s+1, W-s+1, s*s*C]: every s x s window, channels in (row, col, C)
  order."""
  out_h, out_w = x.shape[-3] - size + 1, x.shape[-2] - size + 1
  return jnp.concatenate([x[..., i:i + out_h, j:j + out_w, :] for i in range(size)
                          for j in range(size)], axis=-1)


def conv_as_matmul(x, kernel, stride):
  """A VALID convolution (no bias) with a square kernel [k, k, C, F] and a stride s dividing k.

  Computes exactly what `lax.conv_general_dilated(x, kernel, (s, s), "VALID")` does, as
  space-to-depth into s x s blocks (the stride becomes 1, the kernel (k/s) x (k/s) over s*s*C
  channels), the (k/s) x (k/s) windows gathered into channels, and one matmul. On CPU this runs
  on XLA's matmul kernels: a reward-model train step is 1.8-2.6x faster than with XLA's CPU
  convolutions (BENCHMARKS.md), whose strided forms and gradients are slow.
  """
  size = kernel.shape[0]
  if size % stride:
    raise ValueError(f"kernel size {size} is not a multiple of stride {stride}")
  blocks = size // stride
  out_h, out_w = [(n - size) // stride + 1 for n in x.shape[-3:-1]]
  x = x[..., :(out_h + blocks - 1) * stride, :(out_w + blocks - 1) * stride, :]  # rows/cols read
  x = patches(space_to_depth(x, stride), blocks)  # [..., out_h, out_w, k*k*C]
  channels, features = kernel.shape[2:]
  kernel = kernel.reshape(blocks, stride, blocks, stride, channels, features)
  kernel = kernel.transpose(0, 2, 1, 3, 4, 5).reshape(-1, features)  # rows in x's channel order
  return jnp.dot(x, kernel)


class ConvParams(nn.Module):
  """The kernel [k, k, C, F] and bias [F] of an nn.Conv (same names, shapes and initialisers)."""
  features: int
  kernel_size: int

  @nn.compact
  def __call__(self, in_channels):
    kernel = self.param("kernel", nn.linear.default_kernel_init,
                        (self.kernel_size, self.kernel_size, in_channels, self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return kernel, bias


class ConvTrunk(nn.Module):
  """The reference pixel trunk: [N, H, W, C] -> [N, features].

  Parameters are those of three nn.Conv layers (Conv_0..2: kernel [k, k, C_in, F], bias [F]).
  conv_impl "matmul" computes each layer with `conv_as_matmul`, "xla" with XLA's convolution;
  "auto" (default) picks matmul on CPU and XLA's convolution on accelerators.
  """
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    impl = self.conv_impl
    if impl not in CONV_IMPLS:
      raise ValueError(f"unknown conv_impl {impl!r}; expected one of {CONV_IMPLS}")
    if impl == "auto":
      impl = "matmul" if jax.default_backend() == "cpu" else "xla"
    for i, (features, size, stride) in enumerate(TRUNK_LAYERS):
      kernel, bias = ConvParams(features, size, name=f"Conv_{i}")(x.shape[-1])
      x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
      if impl == "matmul":
        x = conv_as_matmul(x, kernel, stride)
      else:  # XLA's convolution takes one batch dim
        y = lax.conv_general_dilated(x.reshape((-1,) + x.shape[-3:]), kernel, (stride, stride),
                                     "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = y.reshape(x.shape[:-3] + y.shape[1:])
      x = nn.relu(x + bias)
    return x.reshape(x.shape[:-3] + (-1,))


class RewardNet(nn.Module):
  kind: str = "pixel"
  frame_diff: bool = False
  use_wrist: bool = False
  use_instruction: bool = False
  num_instructions: int = 1
  instruction_dim: int = 32
  hidden_sizes: Sequence[int] = (256, 256)
  dtype: jnp.dtype = jnp.float32
  normalize_inputs: bool = False
  low_dim_inputs: Sequence[str] = LOW_DIM_INPUTS
  state_dims: Sequence[int] = ()  # observation/state dimensions kept (in s and s - s'); () = all

  def _low_dim(self, inputs):
    """The low_dim_inputs of [s, a, s - s'], each standardised by the dataset's statistics when
    normalize_inputs, s and s - s' restricted to state_dims when given."""
    state, action = inputs["state"], inputs["action"]
    features = {"state": state, "action": action, "delta": state - inputs["next_state"]}
    if self.normalize_inputs:
      sizes = {"state": state.shape[-1], "action": action.shape[-1], "delta": state.shape[-1]}
      for name, size in sizes.items():
        mean, std = (jax.lax.stop_gradient(self.variable(
            INPUT_STATS, f"{name}_{moment}", init, (size,), jnp.float32).value)
                     for moment, init in (("mean", jnp.zeros), ("std", jnp.ones)))
        features[name] = (features[name] - mean) / std
    if self.state_dims:
      dims = jnp.asarray(self.state_dims, jnp.int32)
      features["state"], features["delta"] = features["state"][..., dims], features["delta"][..., dims]
    return [features[name].astype(self.dtype) for name in LOW_DIM_INPUTS
            if name in self.low_dim_inputs]

  @nn.compact
  def __call__(self, inputs):
    """inputs: dict of [N, ...] per-step arrays -> [N] float32 rewards."""
    features = self._low_dim(inputs)
    if self.kind == "pixel":
      image = normalize_image(inputs["image"], self.dtype)
      if self.frame_diff:
        image = jnp.concatenate([image, image - normalize_image(inputs["next_image"], self.dtype)], -1)
      features.append(ConvTrunk(self.dtype, name="image_trunk")(image))
      if self.use_wrist:
        wrist = normalize_image(inputs["wrist_image"], self.dtype)
        features.append(ConvTrunk(self.dtype, name="wrist_trunk")(wrist))
    elif self.kind != "mlp":
      raise ValueError(f"unknown model kind {self.kind!r}; expected one of {MODEL_KINDS}")
    instruction = None
    if self.use_instruction:
      embedding = nn.Embed(self.num_instructions, self.instruction_dim, dtype=self.dtype,
                           name="instruction_embedding")
      instruction = embedding(inputs["instruction_id"])
      features.append(instruction)
    x = jnp.concatenate(features, axis=-1)
    for layer, size in enumerate(self.hidden_sizes):
      x = nn.Dense(size, dtype=self.dtype)(x)
      if layer == 0 and instruction is not None:  # FiLM: the instruction scales and shifts
        film = nn.Dense(2 * size, dtype=self.dtype, name="instruction_film")(instruction)
        scale, shift = jnp.split(film, 2, axis=-1)
        x = x * (1.0 + scale) + shift
      x = nn.relu(x)
    return nn.Dense(1, dtype=self.dtype)(x)[..., 0].astype(jnp.float32)


def activation_bytes_per_step(model_config, image_size):
  """A rough upper estimate of the float32 activations one training step (one sampled frame)
  keeps for the backward pass: each conv layer's input windows and output, for every trunk,
  and the MLP's layers, x3 (forward values, their gradients, workspace)."""
  floats = 4 * max(model_config.hidden_sizes)
  if model_config.kind == "pixel":
    size, channels = image_size, 3 * (2 if model_config.frame_diff else 1)
    trunk = 0
    for features, kernel, stride in TRUNK_LAYERS:
      size = (size - kernel) // stride + 1
      trunk += size * size * (kernel * kernel * channels + features)
      channels = features
    floats += trunk * (2 if model_config.use_wrist else 1)
  return 3 * 4 * floats


def build_model(model_config, num_instructions=1):
  return RewardNet(kind=model_config.kind, frame_diff=model_config.frame_diff,
                   use_wrist=model_config.use_wrist, use_instruction=model_config.use_instruction,
                   num_instructions=max(1, num_instructions),
                   instruction_dim=model_config.instruction_dim,
                   hidden_sizes=tuple(model_config.hidden_sizes),
                   dtype=DTYPES[model_config.dtype],
                   normalize_inputs=model_config.normalize_inputs,
                   low_dim_inputs=tuple(model_config.low_dim_inputs),
                   state_dims=tuple(model_config.state_dims))
