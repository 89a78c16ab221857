"""Image augmentation for pixel reward models, applied on the device inside the jitted train step
(never in evaluation or prediction).

"shift" (DrQ): each frame is padded by `pad` pixels (edge values) and cropped back at a random
offset in [0, 2 * pad]^2. A step's o and o' (image, next_image) share one offset; its wrist frame
draws its own. The draws depend only on (seed, step), so a resumed run stays bitwise equal.
"""

import dataclasses

import jax
import jax.numpy as jnp

_STREAM = 0x61756721  # keeps the augmentation's keys apart from the parameter init's (seed)


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Which augmentation the train step applies (config.model.augment / augment_pad)."""
  kind: str
  pad: int
  seed: int

  @classmethod
  def from_config(cls, config):
    """config.model.augment / augment_pad for pixel models; "none" otherwise."""
    model = config.model
    kind = model.augment if model.kind == "pixel" else "none"
    return cls(kind=kind, pad=int(model.augment_pad), seed=int(config.seed))

  def __call__(self, batch, step):
    """`batch` with its frames ([B, K, S, S, C] uint8) augmented for train step `step`."""
    if self.kind == "none" or self.pad == 0:
      return batch
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(self.seed), _STREAM), step)
    main_key, wrist_key = jax.random.split(key)
    out = dict(batch)
    for names, draw in ((("image", "next_image"), main_key), (("wrist_image",), wrist_key)):
      present = [n for n in names if n in batch]
      if present:
        lead = batch[present[0]].shape[:-3]
        offsets = jax.random.randint(draw, lead + (2,), 0, 2 * self.pad + 1)
        out.update({n: random_shift(batch[n], offsets, self.pad) for n in present})
    return out


def random_shift(images, offsets, pad):
  """images [..., S, S, C] padded by `pad` (edge values) and cropped back at offsets [..., 2]
  (row, column) in [0, 2 * pad]."""
  height, width, channels = images.shape[-3:]
  flat = images.reshape((-1, height, width, channels))
  padded = jnp.pad(flat, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

  return jax.vmap(crop)(padded, offsets.reshape((-1, 2))).reshape(images.shape)
