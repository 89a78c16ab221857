"""`rrd_jax.RewardModel`: a trained run's reward, callable from any Python loop.

    model = rrd_jax.RewardModel.load("runs/default")          # or checkpoint="best" / a step
    print(model.inputs)                                       # the keys, sizes and dtypes it reads
    r = model(observation, action, next_observation, instruction=["put the bowl on the plate"] * B)
    rewards = model.episode(steps)                            # one whole episode, per step

`observation` / `next_observation` are dicts keyed like the dataset's `observation` features
({"image": uint8 [B, H, W, 3], "state": float32 [B, P], ...}; keys the model does not read are
ignored, so a whole RLDS observation can be passed as is). At an episode's last step
next_observation is that step's own observation, as in training. Frames may have any resolution:
they are resized exactly as the training pipeline resizes them. Inside a jitted function of your own
use the pure `model.apply(model.params, inputs)` on `model.prepare(...)`'s arrays.

Bad input (a missing key, a wrong shape or dtype, an unknown checkpoint) raises
rrd_jax.util.errors.UserError with one sentence naming it.
"""

import dataclasses

import jax
import numpy as np

from rrd_jax.config import loading, schema
from rrd_jax.config.inputs import ModelInputs
from rrd_jax.data import rlds, source
from rrd_jax.train import prepare
from rrd_jax.util.errors import UserError

OBSERVATION = "observation/"


def observation_key(step_key):
  """The key of a step feature inside `observation` ("observation/image" -> "image")."""
  return step_key[len(OBSERVATION):] if step_key.startswith(OBSERVATION) else step_key


@dataclasses.dataclass(frozen=True)
class RewardInputs:
  """What a RewardModel reads: observation keys per model input, sizes and dtypes."""
  state: str  # observation key of the state vector (float32 [B, state_size])
  image: str = ""  # observation key of the main camera (uint8 [B, H, W, 3]); "" = not read
  wrist_image: str = ""  # observation key of the wrist camera; "" = not read
  next_image: bool = False  # also reads next_observation's main camera (o - o')
  instruction: bool = False  # needs instruction=[B strings]
  image_size: int = 0  # frames are resized to image_size x image_size
  state_size: int = 0
  action_size: int = 0

  def __str__(self):
    lines = [f"observation[{self.state!r}]: float32 [B, {self.state_size}] "
             "(and next_observation's)", f"action: float32 [B, {self.action_size}]"]
    for key, what in ((self.image, "main camera"), (self.wrist_image, "wrist camera")):
      if key:
        lines.append(f"observation[{key!r}]: uint8 [B, H, W, 3], {what}, resized to "
                     f"{self.image_size}x{self.image_size}")
    if self.next_image:
      lines.append(f"next_observation[{self.image!r}]: the main camera at t + 1 (frame difference)")
    if self.instruction:
      lines.append("instruction: B strings")
    return "\n".join(lines)


def resize_frames(frames, size):
  """uint8 [N, H, W, 3] -> uint8 [N, size, size, 3], as the training pipeline resizes decoded
  frames (rrd_jax/data/pipeline.py resize_frame); frames already at that size are returned as is."""
  if frames.shape[1:3] == (size, size):
    return frames
  from rrd_jax.data import pipeline  # pylint: disable=import-outside-toplevel  (TensorFlow)
  return pipeline.resize_frame(frames, size).numpy()


class RewardModel:
  """A trained run's reward model r(o, a, o') on numpy batches (see the module docstring)."""

  def __init__(self, state, config, facts, checkpoint_name):
    model_inputs = ModelInputs.from_config(config)
    keys = rlds.FeatureKeys.from_config(config.data)
    sizes = facts.get("input_sizes") or {}
    self.apply = state.apply_fn  # pure: apply(params, {model input: array}) -> [N] rewards
    self.params = state.params
    self.step = int(jax.device_get(state.step))
    self.checkpoint = checkpoint_name
    self.config = config
    self.model_inputs = model_inputs
    self.vocabulary = list(facts.get("instruction_vocabulary") or [source.UNKNOWN_INSTRUCTION])
    self.inputs = RewardInputs(
        state=observation_key(keys.proprio),
        image=observation_key(keys.image) if model_inputs.image or model_inputs.next_image else "",
        wrist_image=observation_key(keys.wrist_image) if model_inputs.wrist_image else "",
        next_image=model_inputs.next_image, instruction=model_inputs.instruction,
        image_size=model_inputs.image_size if model_inputs.frames else 0,
        state_size=int(sizes.get("state", 0)),
        action_size=int(sizes.get("action", 0)))
    self._jitted = jax.jit(self.apply)

  @classmethod
  def load(cls, workdir, checkpoint="latest", sharding=None):
    """The reward model of training run `workdir` at checkpoint "latest", "best" or a step.
    sharding: where its parameters go (default: this process's first device)."""
    if not schema.is_checkpoint_name(checkpoint):
      raise UserError(f"checkpoint must be latest, best or a step number, got {checkpoint!r}")
    config, facts = loading.read_run_config(workdir)
    state, _ = prepare.restore_run_state(workdir, str(checkpoint), sharding=sharding)
    return cls(state, config, facts, str(checkpoint))

  def __repr__(self):
    return (f"RewardModel({self.config.model.kind}, {self.checkpoint} checkpoint at step "
            f"{self.step})\n{self.inputs}")

  def instruction_ids(self, instruction, batch):
    """int32 [batch]: each instruction's index in the training vocabulary (0 = unknown)."""
    if instruction is None:
      raise UserError("this reward model is conditioned on the language instruction: pass "
                      "instruction=[one string per row]")
    if isinstance(instruction, (str, bytes)):
      instruction = [instruction] * batch
    if len(instruction) != batch:
      raise UserError(f"instruction has {len(instruction)} entries for a batch of {batch}")
    decode = lambda s: s.decode("utf-8") if isinstance(s, bytes) else str(s)
    lookup = {text: i for i, text in enumerate(self.vocabulary)}
    return np.asarray([lookup.get(decode(s), 0) for s in instruction], np.int32)

  def prepare(self, observation, action, next_observation, instruction=None):
    """The model's input arrays ({state, next_state, action, image, ...}) for a numpy batch,
    checked and with frames resized; what `apply` takes."""
    spec = self.inputs
    action = _array(action, "action", np.float32, 2)
    batch = action.shape[0]
    _check_last(action, "action", spec.action_size)
    out = {"action": action}
    for name, source_dict, where in (("state", observation, "observation"),
                                     ("next_state", next_observation, "next_observation")):
      value = _array(_get(source_dict, spec.state, where), f"{where}[{spec.state!r}]", np.float32, 2)
      _check_last(value, f"{where}[{spec.state!r}]", spec.state_size)
      out[name] = _check_batch(value, f"{where}[{spec.state!r}]", batch)
    frames = (("image", observation, "observation", spec.image, self.model_inputs.image),
              ("next_image", next_observation, "next_observation", spec.image, spec.next_image),
              ("wrist_image", observation, "observation", spec.wrist_image, bool(spec.wrist_image)))
    for name, source_dict, where, key, used in frames:
      if used:
        label = f"{where}[{key!r}]"
        value = _check_batch(_array(_get(source_dict, key, where), label, np.uint8, 4), label, batch)
        if value.shape[-1] != 3:
          raise UserError(f"{label} must be RGB frames [B, H, W, 3], got shape {value.shape}")
        out[name] = resize_frames(value, spec.image_size)
    if spec.instruction:
      out["instruction_id"] = self.instruction_ids(instruction, batch)
    return {k: out[k] for k in self.model_inputs.keys}

  def __call__(self, observation, action, next_observation, instruction=None):
    """float32 [B] rewards of B steps (o, a, o')."""
    return np.asarray(self._jitted(self.params, self.prepare(observation, action, next_observation,
                                                             instruction)), np.float32)

  def episode(self, steps, instruction=None, batch_size=0):
    """float32 [T] rewards of one episode given as arrays: steps = {"observation": {key: [T, ...]},
    "action": [T, A]} (an RLDS episode's `steps`, stacked); the instruction defaults to the first
    step's `language_instruction` when the model reads one."""
    observation = steps.get("observation") if isinstance(steps, dict) else None
    if not isinstance(observation, dict) or "action" not in steps:
      raise UserError("steps must be a dict with 'observation' (a dict of [T, ...] arrays) and "
                      "'action' ([T, A])")
    length = len(np.asarray(steps["action"]))
    if length == 0:
      raise UserError("the episode has no steps")
    if self.inputs.instruction and instruction is None:
      texts = steps.get(self.config.data.instruction_key)
      instruction = None if texts is None else np.asarray(texts).reshape(-1)[0]
    keep = [k for k in (self.inputs.state, self.inputs.image, self.inputs.wrist_image) if k]
    observation = {k: np.asarray(_get(observation, k, "steps['observation']")) for k in keep}
    following = np.minimum(np.arange(length) + 1, length - 1)  # o' = o at the last step
    size = batch_size or self.config.train.predict_batch_size
    rewards = []
    for start in range(0, length, size):
      rows = np.arange(start, min(start + size, length))
      rewards.append(self(
          {k: v[rows] for k, v in observation.items()}, np.asarray(steps["action"])[rows],
          {k: v[following[rows]] for k, v in observation.items()},
          None if instruction is None else [instruction] * len(rows)))
    return np.concatenate(rewards)


def _get(observation, key, where):
  if not isinstance(observation, dict):
    raise UserError(f"{where} must be a dict of arrays keyed like the dataset's observation "
                    f"features, got {type(observation).__name__}")
  if key not in observation:
    raise UserError(f"{where} has no {key!r}, which this reward model reads (it has: "
                    f"{', '.join(map(repr, observation)) or 'nothing'})")
  return observation[key]


def _array(value, label, dtype, ndim):
  array = np.asarray(value)
  if array.ndim != ndim:
    raise UserError(f"{label} must have {ndim} dimensions (batch first), got shape {array.shape}")
  if dtype == np.uint8 and array.dtype != np.uint8:
    raise UserError(f"{label} must be uint8 frames, got {array.dtype}")
  if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
    raise UserError(f"{label} must be numeric, got {array.dtype}")
  return array.astype(dtype, copy=False)


def _check_last(array, label, size):
  if size and array.shape[-1] != size:
    raise UserError(f"{label} has {array.shape[-1]} values per step; the model was trained with "
                    f"{size}")


def _check_batch(array, label, batch):
  if array.shape[0] != batch:
    raise UserError(f"{label} has {array.shape[0]} rows but action has {batch}")
  return array
