"""The parts of benchmarks/accelerator.py, one module each: plans (the sizes of a run), guards
(logging, failure and memory handling shared by the parts), step (a: the train step against
PyTorch), datasets and rendered (the generated dataset parts b-d read, and its frames rendered
in memory without TensorFlow), device_cache (b), stream (c) and seed_command (d)."""
