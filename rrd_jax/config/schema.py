"""The config schema, at the bottom of the import graph: the allowed values of every enumerated
field, one validator per config file, and the mapping from old field names to today's.

Two kinds of run (config.kind), one config file each:
  "reward_model"  configs/libero_rrd.py      validate_reward_model
  "agent"         configs/mujoco_rrd_sac.py  validate_agent
The same concept has the same name in both: train.log_every_steps, eval.every_steps,
eval.episodes, optim.learning_rate (the reward model's optimiser), checkpoint.*.
Configs saved under older names (a run's config.json, --config.FIELD overrides) are read through
RENAMED / DROPPED with one deprecation line (`upgrade`, `upgrade_key`); fields added since (ADDED)
get the value that reproduces the old run.
"""

import sys

from rrd_jax.util.errors import UserError

RUN_KINDS = ("reward_model", "agent")
# Reward model (configs/libero_rrd.py)
MODEL_KINDS = ("pixel", "mlp")
LOW_DIM_INPUTS = ("state", "action", "delta")  # the low-dim features: s, a, s - s'
AUGMENT_KINDS = ("none", "shift")  # rrd_jax/model/augment.py
LR_SCHEDULES = ("constant", "cosine")  # rrd_jax/train/step.py learning_rate
DTYPE_NAMES = ("float32", "bfloat16")
MIN_PIXEL_IMAGE_SIZE = 36  # smallest input the VALID-padded conv trunk maps to >= 1x1
LOSS_FORMS = ("mean", "return")  # RRD loss: (m - R/T)^2 (reference) or (T*m - R)^2 (seed tool)
EPISODE_WEIGHTINGS = ("length", "uniform")
RETURN_KINDS = ("sum", "time_penalty")
SUCCESS_KINDS = ("reward", "all")  # returns.success (data/returns.py)
CACHE_KINDS = ("none", "host", "device")
EMBEDDED_TASKS = ("touch", "instructed")  # the generated dataset's tasks (data/scenes.py)
CHECKPOINT_NAMES = ("latest", "best")  # or a step number
# Agent (configs/mujoco_rrd_sac.py)
REWARD_KINDS = ("rrd", "rrd_lrd", "ircr", "uniform", "episodic", "dense")
MODEL_REWARD_KINDS = ("rrd", "rrd_lrd")  # the kinds that train a reward model
MUJOCO_ENVS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5",
               "HumanoidStandup-v5", "Reacher-v5", "Swimmer-v5")
TEST_ENVS = ("Pendulum-v1",)  # cheap, for tests and smoke runs
ENV_NAMES = MUJOCO_ENVS + TEST_ENVS
# Where the agent's environments step: gymnasium on the host, or MJX on the device (rl/mjx_envs.py:
# the MuJoCo tasks only).
ENV_BACKENDS = ("gymnasium", "mjx")

# Old name -> today's, per kind of run.
RENAMED = {
    "reward_model": {"train.log_every": "train.log_every_steps",
                     "train.eval_every": "eval.every_steps",
                     "train.eval_batches": "eval.batches",
                     "train.eval_episodes": "eval.episodes"},
    "agent": {"rrd.learning_rate": "optim.learning_rate"},
}
# Fields added since: the value that reproduces what a run saved before them computed.
ADDED = {
    "reward_model": {"model.augment": "none", "model.augment_pad": 4, "optim.weight_decay": 0.0,
                     "model.normalize_inputs": False, "optim.schedule": "constant",
                     "optim.warmup_steps": 0, "returns.success": "reward",
                     "data.cache_memory_gib": 0.0, "compile_cache_dir": "",
                     "model.low_dim_inputs": LOW_DIM_INPUTS, "model.state_dims": (),
                     "returns.kind": "sum", "returns.time_penalty": 0.0,
                     "data.embedded_task": "touch", "data.embedded_block_in_state": False,
                     "data.skip_bad_episodes": False, "data.mixture": {}},
    "agent": {"optim.weight_decay": 0.0, "compile_cache_dir": "", "ircr.heap_size": 10,
              "ircr.replay_capacity": 300_000, "ircr.polyak": 0.999, "ircr.batch_size": 512,
              "ircr.fixed_alpha": 0.0, "env.backend": "gymnasium"},
}
# Fields that no longer exist: what replaced them.
DROPPED = {
    "reward_model": {"checkpoint.restore": "predict/relabel --checkpoint"},
    "agent": {"rrd.bias_correction": "reward.kind=rrd_lrd"},
}


def _check(condition, message):
  if not condition:
    raise UserError(message)


def _one_of(value, allowed, field):
  _check(value in allowed, f"{field} must be one of {', '.join(allowed)}, got {value!r}")


def _layer_sizes(value, field):
  """A non-empty sequence of positive integers, e.g. (256, 256)."""
  sizes = tuple(value) if isinstance(value, (tuple, list)) else (value,)
  _check(len(sizes) >= 1 and all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                 for h in sizes),
         f"{field} must be positive layer sizes such as (256, 256), got {value!r}")


def _low_dim_inputs(model):
  """model.low_dim_inputs: distinct names of LOW_DIM_INPUTS (non-empty for the mlp model);
  model.state_dims: distinct state dimensions >= 0 (the upper bound is the dataset's state size,
  checked when the model is built)."""
  inputs = model.low_dim_inputs
  _check(isinstance(inputs, (tuple, list)) and len(set(inputs)) == len(inputs)
         and set(inputs) <= set(LOW_DIM_INPUTS) and (inputs or model.kind != "mlp"),
         f"model.low_dim_inputs must be distinct names of {LOW_DIM_INPUTS}"
         f"{' (at least one for the mlp model)' if model.kind == 'mlp' else ''}, got {inputs!r}")
  dims = model.state_dims
  _check(isinstance(dims, (tuple, list)) and len(set(dims)) == len(dims)
         and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims),
         f"model.state_dims must be distinct state dimensions >= 0 such as (0, 1, 8, 9), or () for "
         f"all, got {dims!r}")


def _common(config):
  """Fields both config files share, with the same meaning."""
  _check(isinstance(config.seed, int) and config.seed >= 0,
         f"seed must be an integer >= 0, got {config.seed!r}")
  _check(config.optim.learning_rate > 0,
         f"optim.learning_rate must be > 0, got {config.optim.learning_rate}")
  _check(config.optim.grad_clip_norm >= 0,
         f"optim.grad_clip_norm must be >= 0 (0 = off), got {config.optim.grad_clip_norm}")
  _check(config.optim.weight_decay >= 0,
         f"optim.weight_decay must be >= 0 (0 = off), got {config.optim.weight_decay}")
  _check(config.train.log_every_steps >= 1,
         f"train.log_every_steps must be >= 1, got {config.train.log_every_steps}")
  _check(config.eval.every_steps >= 1,
         f"eval.every_steps must be >= 1, got {config.eval.every_steps}")
  _validate_rrd(config.rrd)
  _validate_checkpoint(config.checkpoint)


def is_checkpoint_name(name):
  """"latest", "best" or a step number."""
  return str(name) in CHECKPOINT_NAMES or str(name).isdigit()


def _deprecation(where, changes):
  if changes:
    print(f"note: {where} uses old config names ({'; '.join(changes)}); read as today's "
          "names.", file=sys.stderr)


def _kind_of(tree):
  return tree.get("kind") or ("agent" if "env" in tree else "reward_model")


def run_kind(config):
  """config.kind ("reward_model" or "agent"); configs from before the field get it from their
  sections."""
  kind = _kind_of(config)
  _one_of(kind, RUN_KINDS, "kind")
  return kind


def upgrade_key(key, kind=None):
  """Today's name of a config field (`key` itself when it is not an old name). Without `kind`
  (a command line read before its config file is loaded) any kind's old name is renamed: no old
  name of one kind is a field of the other (tests/test_schema.py checks it)."""
  if kind is None:
    return next((table[key] for table in RENAMED.values() if key in table), key)
  return RENAMED.get(kind, {}).get(key, key)


def _pop(tree, key):
  *parents, leaf = key.split(".")
  for parent in parents:
    tree = tree.get(parent)
    if not isinstance(tree, dict):
      return None, False
  return (tree.pop(leaf), True) if leaf in tree else (None, False)


def _put(tree, key, value):
  *parents, leaf = key.split(".")
  for parent in parents:
    tree = tree.setdefault(parent, {})
  tree[leaf] = value


def upgrade(tree, where="a saved config"):
  """A saved config (nested dicts, e.g. a run's config.json) under today's names, changed in
  place and returned; prints one deprecation line naming what changed."""
  kind, changes = _kind_of(tree), []
  if "kind" not in tree:
    tree["kind"] = kind
  for old, new in RENAMED[kind].items():
    value, found = _pop(tree, old)
    if found:
      _put(tree, new, value)
      changes.append(f"{old} -> {new}")
  for old, replacement in DROPPED[kind].items():
    value, found = _pop(tree, old)
    if found:
      changes.append(f"{old} dropped (now {replacement})")
      if old == "rrd.bias_correction" and value and tree["reward"]["kind"] == "rrd":
        tree["reward"]["kind"] = "rrd_lrd"
  for key, default in ADDED[kind].items():
    value, found = _pop(tree, key)
    _put(tree, key, value if found else default)
  for component in (tree.get("data", {}).get("mixture") or {}).values():
    component.setdefault("success", "reward")  # a mixture component's field added since
  _deprecation(where, changes)
  return tree


def validate(config):
  """Raises UserError naming the first invalid value of a config of either kind."""
  if run_kind(config) == "agent":
    validate_agent(config)
  else:
    validate_reward_model(config)


def validate_reward_model(config):
  """configs/libero_rrd.py's fields."""
  rrd, data, model, train = config.rrd, config.data, config.model, config.train
  _common(config)
  _check(not rrd.bias_correction or rrd.sample_size >= 2,
         f"rrd.bias_correction needs rrd.sample_size >= 2, got {rrd.sample_size}")
  _check(data.image_size > 0, f"data.image_size must be > 0, got {data.image_size}")
  _check(model.kind != "pixel" or data.image_size >= MIN_PIXEL_IMAGE_SIZE,
         f"data.image_size must be >= {MIN_PIXEL_IMAGE_SIZE} for the pixel model's conv trunk, "
         f"got {data.image_size}")
  _one_of(data.episode_weighting, EPISODE_WEIGHTINGS, "data.episode_weighting")
  _check(0.0 <= data.eval_fraction < 1.0,
         f"data.eval_fraction must be in [0, 1), got {data.eval_fraction}")
  _one_of(data.cache, CACHE_KINDS, "data.cache")
  _check(data.get("cache_memory_gib", 0.0) >= 0,
         f"data.cache_memory_gib must be >= 0 (0 = the device's free memory), got "
         f"{data.get('cache_memory_gib')}")
  _one_of(model.kind, MODEL_KINDS, "model.kind")
  _one_of(model.dtype, DTYPE_NAMES, "model.dtype")
  _one_of(model.augment, AUGMENT_KINDS, "model.augment")
  _check(isinstance(model.augment_pad, int) and 0 <= model.augment_pad <= data.image_size // 4,
         f"model.augment_pad must be an integer in [0, data.image_size / 4 = "
         f"{data.image_size // 4}], got {model.augment_pad!r}")
  _check(isinstance(model.normalize_inputs, bool),
         f"model.normalize_inputs must be True or False, got {model.normalize_inputs!r}")
  _low_dim_inputs(model)
  _one_of(config.optim.schedule, LR_SCHEDULES, "optim.schedule")
  _check(isinstance(config.optim.warmup_steps, int) and config.optim.warmup_steps >= 0,
         f"optim.warmup_steps must be an integer >= 0, got {config.optim.warmup_steps!r}")
  _layer_sizes(model.hidden_sizes, "model.hidden_sizes")
  _check(model.instruction_dim >= 1,
         f"model.instruction_dim must be >= 1, got {model.instruction_dim}")
  _check(data.num_parallel_calls == -1 or data.num_parallel_calls >= 1,
         f"data.num_parallel_calls must be -1 (automatic) or >= 1, got {data.num_parallel_calls}")
  _check(train.num_steps >= 0, f"train.num_steps must be >= 0, got {train.num_steps}")
  _check(train.predict_batch_size >= 1,
         f"train.predict_batch_size must be >= 1, got {train.predict_batch_size}")
  _check(config.eval.batches >= 1, f"eval.batches must be >= 1, got {config.eval.batches}")
  _check(config.eval.episodes >= 0,
         f"eval.episodes must be >= 0 (0 = none), got {config.eval.episodes}")
  _check(config.profile.start_step >= 0 and config.profile.num_steps >= 1,
         f"profile.start_step must be >= 0 and profile.num_steps >= 1, got "
         f"{config.profile.start_step} and {config.profile.num_steps}")
  _check(0 <= config.profile.server_port <= 65535,
         f"profile.server_port must be a port in 1..65535 (0 = off), got "
         f"{config.profile.server_port}")
  _validate_returns(config)
  _validate_embedded(data)


def _validate_embedded(data):
  """The generated dataset's sizes and task, where a dataset is generated (no dataset_dir)."""
  mixture = data.get("mixture") or {}
  counts = ([c.embedded_episodes for c in mixture.values() if not c.dataset_dir] if mixture
            else [] if data.dataset_dir else [data.embedded_episodes])
  if not counts:
    return
  _check(min(counts) >= 2 and data.embedded_min_length >= 2
         and data.embedded_max_length >= data.embedded_min_length,
         "data.embedded_episodes and data.embedded_min_length must be >= 2 and "
         "data.embedded_max_length >= data.embedded_min_length")
  _one_of(data.get("embedded_task", "touch"), EMBEDDED_TASKS, "data.embedded_task")
  _check(not data.get("embedded_block_in_state", False)
         or data.get("embedded_task", "touch") == "touch",
         "data.embedded_block_in_state applies to data.embedded_task='touch' only, got "
         f"'{data.get('embedded_task')}'")


def _validate_rrd(rrd):
  _check(rrd.sample_size >= 1, f"rrd.sample_size must be >= 1, got {rrd.sample_size}")
  _check(rrd.episodes_per_batch >= 1,
         f"rrd.episodes_per_batch must be >= 1, got {rrd.episodes_per_batch}")
  _one_of(rrd.loss_form, LOSS_FORMS, "rrd.loss_form")


def _validate_checkpoint(checkpoint):
  _check(checkpoint.every_steps >= 0,
         f"checkpoint.every_steps must be >= 0, got {checkpoint.every_steps}")
  _check(checkpoint.keep >= 1, f"checkpoint.keep must be >= 1, got {checkpoint.keep}")


def _validate_returns(config):
  returns = config.returns
  _one_of(returns.kind, RETURN_KINDS, "returns.kind")
  _one_of(returns.success, SUCCESS_KINDS, "returns.success")
  _check(returns.time_penalty >= 0, f"returns.time_penalty must be >= 0, got {returns.time_penalty}")
  _check(0.0 <= returns.negatives_ratio < 1.0,
         f"returns.negatives_ratio must be in [0, 1), got {returns.negatives_ratio}")
  _check(returns.negatives_ratio == 0 or config.model.use_instruction,
         f"returns.negatives_ratio={returns.negatives_ratio} needs model.use_instruction=True "
         "(negatives differ from positives only in their instruction)")
  for name, component in config.data.mixture.items():
    prefix = f"data.mixture.{name}"
    for field in ("dataset_dir", "weight", "returns_kind", "time_penalty", "success"):
      _check(field in component, f"{prefix} has no field {field!r}; define components with "
             "configs/libero_rrd.py's mixture_component")
    _check(component.weight > 0, f"{prefix}.weight must be > 0, got {component.weight}")
    _one_of(component.returns_kind, RETURN_KINDS, f"{prefix}.returns_kind")
    _one_of(component.success, SUCCESS_KINDS, f"{prefix}.success")
    _check(component.time_penalty >= 0,
           f"{prefix}.time_penalty must be >= 0, got {component.time_penalty}")


def reward_kinds(config):
  """An agent config's reward kinds, in order, without repeats: population.reward_kinds (a
  comma-separated list), else reward.kind."""
  listed = [k.strip() for k in str(config.population.reward_kinds).split(",") if k.strip()]
  return tuple(dict.fromkeys(listed)) or (config.reward.kind,)


def validate_agent(config):
  """configs/mujoco_rrd_sac.py's fields."""
  _one_of(config.env.name, ENV_NAMES, "env.name")
  _one_of(config.reward.kind, REWARD_KINDS, "reward.kind")
  listed = config.population.reward_kinds
  unknown = [k.strip() for k in str(listed).split(",") if k.strip() not in REWARD_KINDS + ("",)]
  if unknown:
    raise UserError(f"population.reward_kinds must be a comma-separated list of "
                    f"{', '.join(REWARD_KINDS)}, got {unknown[0]!r} in {listed!r}")
  _check(config.population.seeds >= 1,
         f"population.seeds must be >= 1, got {config.population.seeds}")
  _validate_sac(config.sac)
  _common(config)
  _layer_sizes(config.rrd.hidden_sizes, "rrd.hidden_sizes")
  _check("rrd_lrd" not in reward_kinds(config) or config.rrd.sample_size >= 2,
         f"bias correction (reward.kind rrd_lrd) needs rrd.sample_size >= 2, "
         f"got {config.rrd.sample_size}")
  e, t = config.env, config.train
  _one_of(e.backend, ENV_BACKENDS, "env.backend")
  _check(e.backend != "mjx" or e.name in MUJOCO_ENVS,
         f"env.backend mjx runs the MuJoCo tasks ({', '.join(MUJOCO_ENVS)}), not {e.name!r}; "
         f"use env.backend=gymnasium")
  _check(e.max_episode_steps >= 1, f"env.max_episode_steps must be >= 1, got {e.max_episode_steps}")
  _check(e.num_envs >= 1, f"env.num_envs must be >= 1, got {e.num_envs}")
  _check(config.replay.capacity >= e.max_episode_steps,
         f"replay.capacity ({config.replay.capacity}) must hold a whole episode "
         f"(env.max_episode_steps = {e.max_episode_steps})")
  _check(t.total_env_steps >= 0, f"train.total_env_steps must be >= 0, got {t.total_env_steps}")
  _check(t.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {t.warmup_steps}")
  _check(t.env_steps_per_call >= 1 and t.env_steps_per_call % e.num_envs == 0,
         f"train.env_steps_per_call must be a positive multiple of env.num_envs ({e.num_envs}), "
         f"got {t.env_steps_per_call}")
  _check(t.updates_per_call >= 0, f"train.updates_per_call must be >= 0, got {t.updates_per_call}")
  _check(config.eval.episodes >= 1, f"eval.episodes must be >= 1, got {config.eval.episodes}")
  _validate_ircr(config.ircr, e.max_episode_steps)


def _validate_ircr(i, max_episode_steps):
  _check(i.heap_size >= 1, f"ircr.heap_size must be >= 1, got {i.heap_size}")
  _check(i.replay_capacity >= max_episode_steps,
         f"ircr.replay_capacity ({i.replay_capacity}) must hold a whole episode "
         f"(env.max_episode_steps = {max_episode_steps})")
  _check(0.0 <= i.polyak < 1.0, f"ircr.polyak must be in [0, 1), got {i.polyak}")
  _check(i.batch_size >= 2, f"ircr.batch_size must be >= 2 (half from the heap), got {i.batch_size}")
  _check(i.fixed_alpha >= 0, f"ircr.fixed_alpha must be >= 0 (0 = tuned), got {i.fixed_alpha}")


def _validate_sac(s):
  _check(0.0 <= s.gamma <= 1.0, f"sac.gamma must be in [0, 1], got {s.gamma}")
  _check(0.0 <= s.polyak < 1.0, f"sac.polyak must be in [0, 1), got {s.polyak}")
  for name in ("actor_lr", "critic_lr"):
    _check(s[name] > 0, f"sac.{name} must be > 0, got {s[name]}")
  _check(s.alpha_lr >= 0, f"sac.alpha_lr must be >= 0, got {s.alpha_lr}")
  _check(s.init_alpha > 0, f"sac.init_alpha must be > 0, got {s.init_alpha}")
  _check(s.batch_size >= 1, f"sac.batch_size must be >= 1, got {s.batch_size}")
  _check(s.num_critics >= 1, f"sac.num_critics must be >= 1, got {s.num_critics}")
  _layer_sizes(s.hidden_sizes, "sac.hidden_sizes")
  _check(s.log_std_min < s.log_std_max,
         f"sac.log_std_min must be < sac.log_std_max, got {s.log_std_min} and {s.log_std_max}")
