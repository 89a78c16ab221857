"""Layer 2, run: the life of a training run, shared by both loops (reward model and agent).

lifecycle.py      Run: workdir, lock, resume, checkpoints, metrics, progress, stopping, final metrics
checkpoint.py     orbax checkpoints (the one owner of the CheckpointManager)
metrics.py        metrics.jsonl and TensorBoard
interrupt.py      Ctrl-C / SIGTERM: finish the call in flight, save, exit
profiling.py      the jax profiler switch
parallel.py       device meshes, shardings, multi-process start
compile_cache.py  JAX's persistent compilation cache
"""
