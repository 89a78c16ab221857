"""Reward networks r(s, a, s') -> scalar, chosen by `config.model.kind`.

- "pixel": the reference conv trunk (32x8x8/4, 64x4x4/2, 64x3x3/1) over the main camera image
  (optionally stacked with the frame difference o - o', optionally a second trunk on the wrist
  image), fused with proprio state, action and s - s' (and optionally a learned instruction
  embedding) through an MLP 256-256 to one scalar.
- "mlp": the reference low-dimensional model, an MLP 256-256 on [s, a, s - s'].
Inputs are dicts of per-step arrays with leading dims [..., ]: images uint8 [..., H, W, 3]
(normalised inside the model), state/next_state [..., P], action [..., A], instruction_id [...].
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

MODEL_KINDS = ("pixel", "mlp")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
MIN_PIXEL_IMAGE_SIZE = 36  # smallest input the VALID-padded conv trunk maps to >= 1x1


def normalize_image(image, dtype):
  return image.astype(dtype) / 127.5 - 1.0


class ConvTrunk(nn.Module):
  """The reference pixel trunk: [N, H, W, C] -> [N, features]."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
      x = nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="VALID",
                  dtype=self.dtype)(x)
      x = nn.relu(x)
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

  @nn.compact
  def __call__(self, inputs):
    """inputs: dict of [N, ...] per-step arrays -> [N] float32 rewards."""
    state = inputs["state"].astype(self.dtype)
    features = [state, inputs["action"].astype(self.dtype),
                state - inputs["next_state"].astype(self.dtype)]
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
    if self.use_instruction:
      embedding = nn.Embed(self.num_instructions, self.instruction_dim, dtype=self.dtype,
                           name="instruction_embedding")
      features.append(embedding(inputs["instruction_id"]))
    x = jnp.concatenate(features, axis=-1)
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size, dtype=self.dtype)(x))
    return nn.Dense(1, dtype=self.dtype)(x)[..., 0].astype(jnp.float32)


def model_input_keys(model_config):
  keys = ["state", "next_state", "action"]
  if model_config.kind == "pixel":
    keys.append("image")
    if model_config.frame_diff:
      keys.append("next_image")
    if model_config.use_wrist:
      keys.append("wrist_image")
  if model_config.use_instruction:
    keys.append("instruction_id")
  return keys


def build_model(model_config, num_instructions=1):
  return RewardNet(kind=model_config.kind, frame_diff=model_config.frame_diff,
                   use_wrist=model_config.use_wrist, use_instruction=model_config.use_instruction,
                   num_instructions=max(1, num_instructions),
                   instruction_dim=model_config.instruction_dim,
                   hidden_sizes=tuple(model_config.hidden_sizes),
                   dtype=DTYPES[model_config.dtype])
