"""The sizes of one benchmarks/accelerator.py run: FULL (one GPU in <= 8 minutes), QUICK (a 2-core
CPU in <= 3) and SMOKE (seconds past the compilation: checks that every part runs)."""

import dataclasses

from benchmarks import common

LIBERO10_LENGTHS = (134, 401)  # uniform: mean 267.5 x 379 episodes = LIBERO-10's ~101k frames


@dataclasses.dataclass(frozen=True)
class Plan:
  """Sizes of one run."""
  step_shapes: tuple  # (name, episodes B, steps K, image size)
  step_block_s: float  # seconds of one timed block of back-to-back steps
  step_blocks: int  # blocks per variant (medians over them)
  equivalence_shapes: tuple  # names of the step shapes where the port's equivalence is checked
  cache_episodes: int
  cache_lengths: tuple  # (min, max) episode length
  cache_image_size: int
  cache_batch: tuple  # (B, K)
  cache_chunk: int  # steps per scanned call
  cache_repeats: int
  stream_shapes: tuple  # (name, B, K, image size, dataset: "seed" (256^2 stored) or "cache")
  seed_stream_episodes: int  # episodes of the 256^2 dataset for the seed-shape stream
  stream_block_s: float
  stream_rounds: int
  seed_epochs: int  # the seed command's --epochs x --cycles updates
  seed_cycles: int
  seed_image_size: int
  budget_s: float  # seconds for the whole run
  generate_in_background: bool  # parts b and c's datasets generated in child processes during a
  # A part, step/stream shape or seed-command run starts only with at least this much left.
  part_min_s: dict = dataclasses.field(default_factory=dict)
  bench_dir: str = common.BENCH_DIR  # where generated datasets stay (reused by later runs)


FULL = Plan(
    step_shapes=(("seed_1x32_256px", 1, 32, 256), ("throughput_32x32_128px", 32, 32, 128)),
    step_block_s=0.4, step_blocks=4,
    equivalence_shapes=("seed_1x32_256px", "throughput_32x32_128px"),
    cache_episodes=379, cache_lengths=LIBERO10_LENGTHS, cache_image_size=128, cache_batch=(32, 32),
    cache_chunk=50, cache_repeats=5,
    stream_shapes=(("seed_1x32_256px", 1, 32, 256, "seed"),
                   ("throughput_32x32_128px", 32, 32, 128, "cache")),
    seed_stream_episodes=16, stream_block_s=0.7, stream_rounds=3,
    seed_epochs=10, seed_cycles=50, seed_image_size=256, budget_s=450.0,
    generate_in_background=True,
    part_min_s={"step": 0, "step_shape": 30, "device_cache": 120, "stream": 40,
                "stream_shape": 20, "seed_command": 60, "seed_run": 40})
QUICK = Plan(
    # the two step shapes at 64², a small cache, no seed-stream dataset: about 3 minutes on 2 cores
    step_shapes=(("seed_like_1x8_64px", 1, 8, 64), ("throughput_like_4x8_64px", 4, 8, 64)),
    equivalence_shapes=("throughput_like_4x8_64px",),
    stream_shapes=(("seed_like_1x8_64px", 1, 8, 64, "cache"),
                   ("throughput_like_4x8_64px", 4, 8, 64, "cache")), seed_image_size=64,
    cache_image_size=64, cache_episodes=30, cache_lengths=(40, 120), cache_batch=(4, 8),
    step_blocks=3, stream_rounds=2, cache_repeats=3, cache_chunk=10, seed_stream_episodes=0,
    seed_epochs=2, seed_cycles=5,
    step_block_s=0.15, stream_block_s=0.3, budget_s=170.0, generate_in_background=False,
    part_min_s={"step": 0, "step_shape": 10, "device_cache": 30, "stream": 15,
                "stream_shape": 8, "seed_command": 25, "seed_run": 12})
# Every part runs (no minimum time left), on the smallest shapes the model takes.
SMOKE = Plan(
    # one of each shape, one repeat, tiny images
    step_shapes=(("seed_like_1x4_36px", 1, 4, 36),), equivalence_shapes=("seed_like_1x4_36px",),
    stream_shapes=(("seed_like_1x4_36px", 1, 4, 36, "cache"),), seed_image_size=36,
    cache_image_size=36, cache_episodes=6, cache_lengths=(8, 12), cache_batch=(2, 4),
    step_blocks=1, stream_rounds=1, cache_repeats=1, cache_chunk=2, seed_stream_episodes=0,
    seed_epochs=1, seed_cycles=2,
    step_block_s=0.02, stream_block_s=0.05, budget_s=600.0, generate_in_background=False,
    part_min_s=dict.fromkeys(QUICK.part_min_s, 0))
PLANS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}
