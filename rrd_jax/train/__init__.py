"""Layer 5, train: the reward-model training loop (config.kind = "reward_model").

step.py        TrainState and the jitted train / eval / predict steps
feeding.py     how batches reach the step: streamed or host-cached, or a device-resident frame table
prepare.py     open the configured data; restore a trained run's state (shared with infer/)
evaluation.py  whole-episode predictions and the statistics that say whether the reward was recovered
plots.py       figures of predicted rewards
loop.py        the loop: step, evaluate, log, checkpoint (rrd-train --config libero_rrd)
"""
