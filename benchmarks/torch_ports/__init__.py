"""PyTorch ports of rrd_jax's models, the reference sides of the benchmarks (they need torch:
benchmarks/requirements.txt): torch_reference (the pixel reward model, its loss and optimiser) and
torch_sac (SAC of rrd_jax.rl.sac's sizes and math)."""
