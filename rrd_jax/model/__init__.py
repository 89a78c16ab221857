"""Layer 4, model: the reward network and what trains it, as pure functions.

networks.py  reward networks r(s, a, s') -> scalar (pixel CNN, state MLP), by config.model.kind
augment.py   random-shift image augmentation inside the jitted step
losses.py    L-Rand-RD and L-RD with bias correction (docs/ALGORITHM.md)
"""
