"""Which per-step inputs a reward model reads: the one place that says so.

The data pipeline and the frame caches produce exactly these inputs, the model reads them, the
online agent feeds them from its replay buffer, and a train state is initialised from their shapes
alone (`specs`). Per-step arrays, leading dims [..., ]:
  state, next_state  float32 [..., P]   proprioceptive state at t and t + 1 (t + 1 = t at the end)
  action             float32 [..., A]
  image, next_image  uint8 [..., S, S, 3]  main camera at t (and t + 1: the frame difference)
  wrist_image        uint8 [..., S, S, 3]
  instruction_id     int32 [...]        index into the run's instruction vocabulary
"""

import dataclasses

import jax
import numpy as np

LOW_DIM_KEYS = ("state", "next_state", "action")


@dataclasses.dataclass(frozen=True)
class ModelInputs:
  """The inputs of one reward model configuration (config.model + config.data.image_size)."""
  image: bool = True
  next_image: bool = False  # o' for the frame difference o - o'
  wrist_image: bool = False
  instruction: bool = False
  image_size: int = 84

  @classmethod
  def from_model_config(cls, model_config, image_size):
    pixels = model_config.kind == "pixel"
    return cls(image=pixels, next_image=pixels and bool(model_config.frame_diff),
               wrist_image=pixels and bool(model_config.use_wrist),
               instruction=bool(model_config.use_instruction), image_size=int(image_size))

  @classmethod
  def from_config(cls, config):
    return cls.from_model_config(config.model, config.data.image_size)

  @classmethod
  def low_dim(cls):
    """The reference MLP's inputs [s, a, s - s'] (the online agent's reward model)."""
    return cls(image=False)

  @property
  def keys(self):
    """The input names, in a fixed order."""
    flags = (("image", self.image), ("next_image", self.next_image),
             ("wrist_image", self.wrist_image), ("instruction_id", self.instruction))
    return LOW_DIM_KEYS + tuple(name for name, on in flags if on)

  @property
  def frames(self):
    """The camera frames read per step (the main camera also serves next_image)."""
    return tuple(name for name, on in (("image", self.image or self.next_image),
                                       ("wrist_image", self.wrist_image)) if on)

  def specs(self, state_size, action_size, batch=1):
    """{name: jax.ShapeDtypeStruct [batch, ...]}: enough to initialise a model (jax.eval_shape)."""
    image = (batch, self.image_size, self.image_size, 3)
    shapes = {"state": ((batch, state_size), np.float32),
              "next_state": ((batch, state_size), np.float32),
              "action": ((batch, action_size), np.float32),
              "image": (image, np.uint8), "next_image": (image, np.uint8),
              "wrist_image": (image, np.uint8), "instruction_id": ((batch,), np.int32)}
    return {k: jax.ShapeDtypeStruct(*shapes[k]) for k in self.keys}
