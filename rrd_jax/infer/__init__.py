"""Layer 6, infer: using a trained reward model.

reward_model.py  rrd_jax.RewardModel: a trained run's reward, callable from any Python loop
predict.py       every step's predicted reward and each episode's predicted return, written to files
relabel.py       a copy of an RLDS dataset with the learned reward on every step
"""
