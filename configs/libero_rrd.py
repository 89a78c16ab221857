"""RRD reward model on a LIBERO-layout RLDS dataset (default: the embedded generated dataset).

Usage: python -m rrd_jax.cli.train --config configs/libero_rrd.py[:VARIANT] --workdir DIR \
         [--config.data.dataset_dir=/data/libero_10_no_noops/1.0.0] [--config.KEY=VALUE ...]
Variants:
  (none)  pixel reward model on the main camera, sized for a CPU-friendly default job.
  mlp     the low-dimensional model as a state-only reward r(s) (the reference's inputs [state,
          action, state - next_state]: --config.model.low_dim_inputs="('state','action','delta')"),
          lr 1e-3 without weight decay, 10,000 updates (about 2-3 minutes on a CPU).
  seed    the seed command's shapes: 256x256 images, K=32, one episode per batch, 500 updates.
  demos   the LIBERO demo recipe on generated LIBERO-like demos (every return is 1): time-penalised
          returns plus instruction-relabelled negatives, instruction-conditioned model. LIBERO
          demos mark success with reward 1 on the last step (returns.success="reward", the
          default); for demos whose reward field is empty or 0 (most Open X-Embodiment datasets)
          add --config.returns.success=all so every demo counts as a success.
  mixture demos (time-penalised) mixed 50/50 with policy rollouts (30% success, raw returns).
"""

import ml_collections


def mixture_component(dataset_dir="", weight=1.0, returns_kind="sum", time_penalty=0.0,
                      embedded_episodes=500, embedded_success_rate=1.0, embedded_seed=0,
                      success="reward"):
  """One dataset of a data mixture; "" dataset_dir = a generated task-"instructed" dataset."""
  return ml_collections.ConfigDict(dict(
      dataset_dir=dataset_dir, weight=weight, returns_kind=returns_kind, time_penalty=time_penalty,
      embedded_episodes=embedded_episodes, embedded_success_rate=embedded_success_rate,
      embedded_seed=embedded_seed, success=success))


def get_config(variant=""):
  config = ml_collections.ConfigDict()
  config.kind = "reward_model"  # The loop that runs this config (rrd_jax/train/loop.py).
  config.seed = 0  # Seeds parameter init and the sampler (the batch at step s depends only on seed, s).
  config.compile_cache_dir = "~/.cache/rrd_jax/compilation"  # JAX's persistent compilation
  #   cache for rrd-train / rrd-legacy (a rerun of the same shapes skips XLA compilation); "" = off.

  config.data = data = ml_collections.ConfigDict()
  data.dataset_dir = ""  # RLDS version dir, e.g. .../libero_10_no_noops/1.0.0; "" = embedded dataset.
  data.embedded_dir = "~/.cache/rrd_jax/embedded"  # Where the embedded dataset is generated (once).
  data.embedded_episodes = 1000  # Embedded dataset: number of episodes (fewer lets the net memorise episodes).
  data.embedded_min_length = 30  # Embedded dataset: shortest episode.
  data.embedded_max_length = 60  # Embedded dataset: longest episode.
  data.embedded_image_size = 64  # Embedded dataset: stored image resolution.
  data.embedded_task = "touch"  # Embedded dataset: "touch" (dense reward) or "instructed" (demos).
  data.embedded_success_rate = 1.0  # Embedded "instructed" task: fraction of successful episodes.
  data.embedded_block_in_state = False  # Embedded "touch" task: observation/state also holds the
  #                                       block's (x, y), so a state model can see where the reward is.
  # Several datasets sampled by weight, each with its own return definition (mixture_component
  # fields); empty = the one dataset above. Components' embedded data use the data.embedded_* sizes.
  data.mixture = ml_collections.ConfigDict()
  data.image_size = 64  # Frames are resized to image_size x image_size after decoding.
  data.image_key = "observation/image"  # Main camera, inside `steps`.
  data.wrist_image_key = "observation/wrist_image"  # Wrist camera (model.use_wrist).
  data.proprio_key = "observation/state"  # Proprioceptive state vector.
  data.action_key = "action"
  data.reward_key = "reward"  # Episode return = sum of this field.
  data.instruction_key = "language_instruction"  # "" if the dataset has none.
  data.file_path_key = "episode_metadata/file_path"  # Hashed to pick held-out episodes.
  data.episode_weighting = "length"  # "length": episodes drawn with prob. proportional to T; "uniform".
  data.eval_fraction = 0.1  # Fraction of episodes held out for evaluation (by file_path hash).
  data.num_parallel_calls = -1  # tf.data parallel episode loads (-1 = AUTOTUNE).
  data.cache = "none"  # "none": stream with tf.data; "host"/"device": decode every training frame
  #                      once into host RAM (one process) / accelerator memory (device: split over
  #                      all devices of all processes, sampling inside the jit).
  data.cache_memory_gib = 0.0  # data.cache=device: most GiB of frames per device (0 = its free memory).
  data.skip_bad_episodes = False  # True: skip unreadable / non-finite / undecodable-frame episodes
  #                                (counted; every frame read is decoded once at start) instead of failing.

  config.returns = returns = ml_collections.ConfigDict()
  returns.kind = "sum"  # "sum": R = sum of rewards; "time_penalty": R = sum - time_penalty * T.
  returns.time_penalty = 0.01  # c of kind "time_penalty" (per-step reward - c).
  returns.success = "reward"  # "reward": an episode succeeded if its reward field sums to > 0;
  #                            "all": every episode is a success (return 1 + the kind's offset):
  #                            demos whose reward field is empty or 0 (e.g. many OXE datasets).
  returns.negatives_ratio = 0.0  # Fraction of sampled episodes relabelled with another task's
  #                                instruction and given negative_return (needs model.use_instruction).
  returns.negative_return = 0.0

  config.model = model = ml_collections.ConfigDict()
  model.kind = "pixel"  # "pixel" (conv trunk + MLP) or "mlp" (low-dim MLP on [s, a, s - s']).
  model.frame_diff = False  # Pixel model: also feed the frame difference o - o'.
  model.use_wrist = False  # Pixel model: a second conv trunk on the wrist camera.
  model.augment = "shift"  # Pixel model, training only: "shift" (DrQ random shift) or "none".
  model.augment_pad = 8  # "shift": pixels of padding, i.e. the largest shift either way (8 holds
  #                        held-out figures best on small data; BENCHMARKS.md).
  model.normalize_inputs = False  # Standardise s, a, s - s' by the training data's mean/std
  #                                  (computed while indexing, saved in the checkpoint).
  model.low_dim_inputs = ("state", "action", "delta")  # Which of s, a, s - s' the model sees.
  model.state_dims = ()  # Dimensions of observation/state kept in s and s - s'; () = all.
  model.use_instruction = False  # Learned embedding of the language instruction.
  model.instruction_dim = 32
  model.hidden_sizes = (256, 256)
  model.dtype = "float32"  # Compute dtype: "float32" or "bfloat16" (params stay float32).

  config.rrd = rrd = ml_collections.ConfigDict()
  rrd.sample_size = 32  # K: steps sampled per episode (with replacement only when K > T).
  rrd.episodes_per_batch = 8  # Episodes per training batch.
  rrd.bias_correction = False  # True: L-RD via the bias-corrected estimator (needs K >= 2).
  rrd.loss_form = "mean"  # "mean": (m - R/T)^2 (reference); "return": (T*m - R)^2 (seed tool).

  config.optim = optim = ml_collections.ConfigDict()
  optim.learning_rate = 3e-4  # Adam.
  optim.grad_clip_norm = 0.0  # Global-norm clipping; 0 = off.
  optim.weight_decay = 1.0  # Decoupled weight decay (AdamW: w -= lr * wd * w each step); 0 = plain
  #                          Adam. 1.0 keeps held-out figures from drifting down (BENCHMARKS.md).
  optim.schedule = "constant"  # "constant" or "cosine" (to 0 at train.num_steps).
  optim.warmup_steps = 0  # "cosine": linear warm-up steps from 0.

  config.train = train = ml_collections.ConfigDict()
  train.num_steps = 1500  # Reward-model updates.
  train.log_every_steps = 50  # Steps between train metric logs.
  train.predict_batch_size = 256  # Steps per forward pass when predicting whole episodes.

  config.eval = evaluation = ml_collections.ConfigDict()
  evaluation.every_steps = 250  # Steps between held-out evaluations (and at the end; 6 in the
  #                              default job, so the best checkpoint (by eval/loss) means something).
  evaluation.batches = 4  # Held-out RRD batches per evaluation (fixed across evaluations).
  evaluation.episodes = 64  # Held-out episodes predicted in full per evaluation (0 = none).

  config.checkpoint = checkpoint = ml_collections.ConfigDict()
  checkpoint.dir = ""  # Where checkpoints go; "" = WORKDIR/checkpoints.
  checkpoint.every_steps = 500  # Periodic save interval in steps (resume point); 0 = none.
  checkpoint.keep = 3  # Periodic/final checkpoints kept (newest); the best is kept besides.
  checkpoint.keep_best = True  # Also keep the checkpoint with the lowest held-out eval/loss.
  checkpoint.save_final = True  # Save a checkpoint at the end of training.
  checkpoint.overwrite = False  # True: move a different run found in --workdir aside, start anew.

  config.mesh = mesh = ml_collections.ConfigDict()
  mesh.data = -1  # Devices on the 1-D `data` mesh axis (batch split over it); -1 = all devices.

  config.profile = profile = ml_collections.ConfigDict()
  profile.start_step = 0  # First step of a jax.profiler trace; 0 = no trace.
  profile.num_steps = 5  # Steps traced.
  profile.dir = ""  # Trace directory; "" = WORKDIR/tensorboard (TensorBoard's profile tab).
  profile.server_port = 0  # Start jax.profiler's server on this port for live capture; 0 = off.

  if variant == "mlp":
    # A state-only reward r(s): with the action and the speed s - s' among its inputs the MLP fits
    # the returns of a few hundred episodes with rewards the held-out episodes do not share
    # (BENCHMARKS.md, generalisation). Weight decay 1.0 at this rate underfits; 0 holds up here.
    data.embedded_block_in_state = True  # on the default touch data the block is only in the image
    model.kind = "mlp"
    model.low_dim_inputs = ("state",)
    optim.learning_rate = 1e-3
    optim.weight_decay = 0.0
    train.num_steps = 10000
    evaluation.every_steps = 500
  elif variant == "seed":
    data.image_size = 256
    rrd.sample_size = 32
    rrd.episodes_per_batch = 1
    rrd.loss_form = "return"
    train.num_steps = 500
    evaluation.every_steps = 100
  elif variant in ("demos", "mixture"):
    data.embedded_task = "instructed"
    data.embedded_min_length = 10
    data.embedded_max_length = 100
    returns.kind = "time_penalty"
    returns.time_penalty = 0.01
    returns.negatives_ratio = 0.5
    model.use_instruction = True
    model.frame_diff = True
    train.num_steps = 3000
    if variant == "mixture":
      data.mixture.demos = mixture_component(weight=0.5, returns_kind="time_penalty",
                                             time_penalty=0.01, embedded_success_rate=1.0)
      data.mixture.rollouts = mixture_component(weight=0.5, embedded_success_rate=0.3,
                                                embedded_seed=1)
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/libero_rrd.py; "
                     "expected mlp, seed, demos or mixture")
  return config
