"""How data.cache=device splits the training episodes over the D devices of the data mesh.

Assignment: each device holds the frames of a disjoint set of episodes, balanced by frame count
(longest episode first, onto the device with the fewest frames so far; ties to the lower device).
It depends only on the episode lengths and D, so any split of the same D devices over processes
(2 processes x 1 device, 1 process x 2 devices) holds the same shards and draws the same batches.

Sampling law: with B episodes per batch, device d draws B/D of them i.i.d. from its own shard by
the single-table law restricted to the shard and renormalised: p_d(i) = p(i) / P_d, where p is the
one-table law (proportional to length, or uniform; mixture weights included) and P_d = sum of p
over d's episodes. An episode's expected share of a batch is therefore q(i) = p(i) / (D * P_d)
instead of p(i): the same when every shard holds the probability mass 1/D (length weighting:
the same frame count). `ShardPlan.law_deviation` is the largest relative difference |q/p - 1|.
Step indices within an episode follow the one-table law exactly. With D = 1 nothing changes.
"""

import dataclasses
import heapq

import numpy as np


def assign(lengths, num_shards):
  """Episode positions per shard, balanced by frame count; each shard's positions ascending."""
  lengths = np.asarray(lengths, np.int64)
  heap = [(0, d) for d in range(num_shards)]  # (frames so far, shard)
  members = [[] for _ in range(num_shards)]
  for position in np.argsort(-lengths, kind="stable"):
    frames, d = heapq.heappop(heap)
    members[d].append(int(position))
    heapq.heappush(heap, (frames + int(lengths[position]), d))
  return [np.sort(np.asarray(m, np.int64)) for m in members]


@dataclasses.dataclass(frozen=True)
class ShardPlan:
  members: list  # [D] arrays of positions (into the training episodes), ascending
  lengths: np.ndarray  # [N] episode lengths
  probabilities: np.ndarray  # [N] float64: the one-table sampling law p

  @classmethod
  def build(cls, lengths, probabilities, num_shards):
    return cls(assign(lengths, num_shards), np.asarray(lengths, np.int64),
               np.asarray(probabilities, np.float64))

  @property
  def num_shards(self):
    return len(self.members)

  @property
  def frames(self):
    """[D] frames each device holds (before padding)."""
    return [int(self.lengths[m].sum()) for m in self.members]

  @property
  def episodes(self):
    return [len(m) for m in self.members]

  @property
  def max_frames(self):
    return max(self.frames)

  @property
  def max_episodes(self):
    return max(self.episodes)

  def shard_probabilities(self, shard):
    """p_d over the shard's episodes, padded with zeros to max_episodes (float32)."""
    p = self.probabilities[self.members[shard]]
    if self.num_shards > 1:
      p = p / p.sum()
    out = np.zeros(self.max_episodes, np.float32)
    out[:len(p)] = p
    return out

  def marginals(self):
    """[N] q: each episode's expected share of a batch under the sharded law."""
    q = np.zeros_like(self.probabilities)
    for members in self.members:
      p = self.probabilities[members]
      q[members] = p / (self.num_shards * p.sum())
    return q

  def law_deviation(self):
    """max |q(i) / p(i) - 1| over episodes with p(i) > 0."""
    p, q = self.probabilities, self.marginals()
    drawn = p > 0
    return float(np.max(np.abs(q[drawn] / p[drawn] - 1.0))) if drawn.any() else 0.0
