"""The online RRD agent: SAC on episodic-reward MuJoCo tasks with a reward model trained alongside.

envs.py      the episodic-reward wrapper and a batch of environments stepped together
replay.py    the device replay buffer of finished episodes, sampling inside jit
rewards.py   the reward each transition gets for SAC, per config.reward.kind
sac.py       SAC networks, agent state and the update math
learner.py   one training step (RRD update + SAC update) and N of them fused in a lax.scan
population.py  several runs (seeds x reward kinds) side by side: members, their directories
agent_loop.py  the loop: collect, insert, train, evaluate, log, checkpoint (rrd-train)
"""
