"""A population: several online runs (seeds x reward kinds) trained side by side in one process.

config.population.seeds = S and config.population.reward_kinds = "k1,k2,..." ("" = reward.kind)
give the members (kind, seed) for every kind and seeds seed, seed + 1, ..., seed + S - 1. Their
learner states and replay buffers are stacked on a leading member axis and every training call is
vmapped over it (learner.py), so on an accelerator a population costs about as many kernel
launches as one run; their environments step together in one EnvBatch (subprocesses optional).
With several local devices the member axis is split over them (config.population.devices, 0 = the
most that divide the member count; parallel.member_sharding): members never communicate, so each
device trains its own members.

A population of one is a plain run and writes into WORKDIR itself. A larger one writes each
member's run into WORKDIR/<kind>_seed<seed>/ (config.json with the member's own reward.kind and
seed, metrics.jsonl, tensorboard/, learning_curve.png, final_metrics.json), so every member is a
run directory that rrd_jax.cli.plot_runs reads, and WORKDIR/comparison.png + comparison.json compare
them (mean +- std over seeds per kind).
"""

import dataclasses
import os

import jax
import jax.numpy as jnp

from rrd_jax.config.schema import reward_kinds  # the population's reward kinds, in order


@dataclasses.dataclass(frozen=True)
class Member:
  kind: str
  seed: int

  @property
  def name(self):
    return f"{self.kind}_seed{self.seed}"


def members(config):
  """[Member]: every reward kind with every seed (kind-major)."""
  return [Member(kind, config.seed + i) for kind in reward_kinds(config)
          for i in range(config.population.seeds)]


def member_config(config, member):
  """`config` as the single run `member` would have it (its own reward.kind and seed)."""
  single = config.copy_and_resolve_references()
  single.reward.kind, single.seed = member.kind, member.seed
  single.population.seeds, single.population.reward_kinds = 1, ""
  return single


def member_dir(workdir, member, population_size):
  return workdir if population_size == 1 else os.path.join(workdir, member.name)


def stack(trees):
  """Pytrees of the same structure -> one pytree with a leading member axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)

