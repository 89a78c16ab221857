"""RRD-SAC on episodic-reward MuJoCo tasks (docs/ALGORITHM.md, "The full agent (RRD-SAC)").

Usage: python -m rrd_jax.cli.train --config configs/mujoco_rrd_sac.py:VARIANT --workdir DIR \
         [--config.reward.kind=ircr] [--config.KEY=VALUE ...]
Variants: hopper (default), walker2d, halfcheetah, ant, humanoid, humanoidstandup, reacher,
  swimmer (the paper's eight episodic tasks, gymnasium v5, 1M env steps; reacher's episodes end
  at gymnasium's 50 steps, the others' at 1000),
  pendulum (Pendulum-v1, dense reward, small: a cheap check that SAC learns),
  <task>_comparison, e.g. hopper_comparison: the reward-kind comparison of BENCHMARKS.md as one
  population (rrd, ircr, episodic, dense x 3 seeds, 200k env steps, environments in
  subprocesses), written to WORKDIR/<kind>_seed<seed>/ plus WORKDIR/comparison.png.
--config.env.backend=mjx runs any MuJoCo variant's environments in MJX on the device (acting,
stepping, storing and training in one jitted call per chunk; rrd_jax/rl/device_agent.py), with
env.num_envs environments per member.
The defaults are the reference's: SAC 256-256, Adam 3e-4, alpha 1.0 tuned to -|A|, polyak 0.995,
batch 256, buffer 1e6, 10k warm-up steps, one gradient step per environment step (taken 100 at a
time after every 100 environment steps, as the reference's iterations do), RRD K=64 steps of
256 // 64 = 4 episodes per reward-model update.
"""

import ml_collections

ENVS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5",
        "ant": "Ant-v5", "humanoid": "Humanoid-v5", "humanoidstandup": "HumanoidStandup-v5",
        "reacher": "Reacher-v5", "swimmer": "Swimmer-v5", "pendulum": "Pendulum-v1"}
# The paper's eight episodic MuJoCo tasks (the suite of BENCHMARKS.md and benchmarks/agent_suite).
PAPER_TASKS = ("ant", "halfcheetah", "walker2d", "humanoid", "reacher", "swimmer", "hopper",
               "humanoidstandup")
# Gymnasium's own time limits where they are not 1000 steps.
TIME_LIMITS = {"reacher": 50, "pendulum": 200}


COMPARISON = "_comparison"


def get_config(variant="hopper"):
  variant = variant or "hopper"
  comparison = variant.endswith(COMPARISON) and variant != "pendulum" + COMPARISON
  if comparison:
    variant = variant[:-len(COMPARISON)]
  if variant not in ENVS:
    raise ValueError(f"unknown variant {variant!r} of configs/mujoco_rrd_sac.py; expected one of "
                     f"{', '.join(ENVS)}, or a MuJoCo one + {COMPARISON!r}")
  config = ml_collections.ConfigDict()
  config.kind = "agent"  # The loop that runs this config (rrd_jax/rl/agent_loop.py).
  config.seed = 0  # Seeds networks, sampling, exploration and the environments.
  config.compile_cache_dir = "~/.cache/rrd_jax/compilation"  # JAX's persistent compilation
  #   cache for rrd-train / rrd-legacy (a rerun of the same shapes skips XLA compilation); "" = off.

  config.env = env = ml_collections.ConfigDict()
  env.name = ENVS[variant]  # Gymnasium id: Hopper-v5, Walker2d-v5, HalfCheetah-v5, Ant-v5, Humanoid-v5, Pendulum-v1.
  env.max_episode_steps = TIME_LIMITS.get(variant, 1000)  # Time limit; reaching it ends the
  #                                                         episode but is not a terminal.
  env.num_envs = 1  # Training environments stepped side by side (each step = num_envs env steps).
  env.subprocesses = False  # gymnasium backend: each environment steps in its own process.
  env.backend = "gymnasium"  # Where envs step: "gymnasium" (host) or "mjx" (MuJoCo XLA on the
  #   device: acting, stepping, storing and training in one jitted scan per call; MuJoCo tasks).

  config.population = population = ml_collections.ConfigDict()
  population.seeds = 1  # Runs seed, seed + 1, ... trained side by side, vmapped (one process).
  population.reward_kinds = ""  # Comma-separated kinds run side by side, e.g. "rrd,ircr,episodic"; "" = reward.kind.
  population.devices = 0  # Local devices the members are split over; 0 = most that divide the count.

  config.reward = reward = ml_collections.ConfigDict()
  reward.kind = "rrd"  # SAC's reward: rrd, rrd_lrd (L-RD: bias-corrected), ircr, uniform, episodic (raw delayed), dense (oracle).

  config.sac = sac = ml_collections.ConfigDict()
  sac.hidden_sizes = (256, 256)  # Actor and each critic.
  sac.num_critics = 2  # Twin critics (min over them in the target and the actor loss).
  sac.gamma = 0.99  # Discount.
  sac.polyak = 0.995  # Target critics: polyak * target + (1 - polyak) * critic, every update.
  sac.actor_lr = 3e-4  # Adam.
  sac.critic_lr = 3e-4  # Adam.
  sac.alpha_lr = 3e-4  # Adam on log(alpha); 0 = fixed temperature.
  sac.init_alpha = 1.0  # Initial temperature.
  sac.target_entropy_per_dim = -1.0  # Target entropy = this x |A| (reference: -|A|).
  sac.log_std_min = -20.0  # Actor log-std clipped to [log_std_min, log_std_max].
  sac.log_std_max = 2.0
  sac.batch_size = 256  # Transitions per SAC update.

  config.rrd = rrd = ml_collections.ConfigDict()
  rrd.sample_size = 64  # K: steps sampled per episode (with replacement only when K > T).
  rrd.episodes_per_batch = 4  # Episodes per reward-model update (reference: 256 // 64).
  rrd.loss_form = "mean"  # "mean": (m - R/T)^2 (reference); "return": (T*m - R)^2.
  rrd.hidden_sizes = (256, 256)  # Reward model MLP on [s, a, s - s'].

  config.ircr = ircr = ml_collections.ConfigDict()  # reward.kind=ircr: the original IRCR's own
  #                                                   settings (docs/ALGORITHM.md), not sac.*'s.
  ircr.heap_size = 10  # Highest-return episodes kept apart; half of every SAC batch comes from them.
  ircr.replay_capacity = 300_000  # Transitions in its ring buffer (replay.capacity is RRD's).
  ircr.polyak = 0.999
  ircr.batch_size = 512
  ircr.fixed_alpha = 0.0  # > 0: temperature fixed at this value (the original's Humanoid: 0.1); 0 = tuned.

  config.optim = optim = ml_collections.ConfigDict()  # The reward model's optimiser.
  optim.learning_rate = 3e-4  # Adam.
  optim.grad_clip_norm = 0.0  # Global-norm clipping; 0 = off.
  optim.weight_decay = 0.0  # Decoupled weight decay (AdamW); 0 = plain Adam.

  config.replay = replay = ml_collections.ConfigDict()
  replay.capacity = 1_000_000  # Transitions kept (a ring of whole finished episodes).

  config.train = train = ml_collections.ConfigDict()
  train.total_env_steps = 1_000_000  # Environment steps in the run (reference: 3M).
  train.warmup_steps = 10_000  # Uniform random actions and no updates until this many steps.
  train.env_steps_per_call = 100  # Environment steps between training calls.
  train.updates_per_call = 100  # Gradient steps per call, fused in one lax.scan (100/100: 1 per env step).
  train.act_on_host = True  # gymnasium backend on an accelerator: act from a host copy of the actor.
  train.log_every_steps = 5000  # Environment steps between training metric logs.

  config.eval = evaluation = ml_collections.ConfigDict()
  evaluation.every_steps = 10_000  # Environment steps between evaluations (and at the end).
  evaluation.episodes = 10  # Deterministic-policy episodes per evaluation (true dense return).

  config.checkpoint = checkpoint = ml_collections.ConfigDict()
  checkpoint.dir = ""  # Where checkpoints go; "" = WORKDIR/checkpoints.
  checkpoint.every_steps = 50_000  # Environment steps between saves (agent + replay buffer); 0 = none.
  checkpoint.keep = 1  # Saves kept (each holds the replay buffer).
  checkpoint.save_final = True  # Save at the end of training.
  checkpoint.overwrite = False  # True: move a different run found in --workdir aside, start anew.

  if variant == "humanoid":
    ircr.fixed_alpha = 0.1
  if variant == "pendulum":
    reward.kind = "dense"
    sac.hidden_sizes = (64, 64)
    sac.actor_lr = sac.critic_lr = 1e-3  # Small nets, short run: faster learning rates.
    sac.alpha_lr = 1e-3  # Pendulum's rewards are small next to alpha = 1: let alpha fall faster.
    rrd.hidden_sizes = (64, 64)
    replay.capacity = 20_000
    train.total_env_steps = 7_000
    train.warmup_steps = 1000
    train.log_every_steps = 1000
    evaluation.every_steps = 1000
    evaluation.episodes = 4
    checkpoint.every_steps = 0
  if comparison:
    population.reward_kinds = "rrd,ircr,episodic,dense"
    population.seeds = 3
    env.subprocesses = True
    train.total_env_steps = 200_000
    evaluation.episodes = 5
  return config
