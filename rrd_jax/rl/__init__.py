"""Layer 7, rl: the online RRD agent: SAC on episodic-reward MuJoCo tasks with a reward model
trained alongside.

envs.py      the episodic-reward wrapper and a batch of environments stepped together
replay.py    the device replay buffer of finished episodes, sampling inside jit
rewards.py   the reward each transition gets for SAC, per config.reward.kind
sac.py       SAC networks, agent state and the update math
learner.py   one training step (RRD update + SAC update) and N of them fused in a lax.scan
population.py  several runs (seeds x reward kinds) side by side: members, their directories
agent_loop.py  the loop: collect, insert, train, evaluate, log, checkpoint (rrd-train)
agent_state.py host_agent.py device_agent.py  the shared state and the gymnasium / MJX backends
mjx_envs.py mjx_tasks.py  the MuJoCo tasks in MJX
curves.py      learning curves of agent runs (rrd-plot-runs)
"""
