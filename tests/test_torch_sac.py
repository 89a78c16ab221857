"""benchmarks/torch_ports/torch_sac.py: the PyTorch SAC the SAC benchmark compares against.

The critics are frozen in the actor step (no wasted critic gradients, same update), the
device-resident replay samples valid batches, and the torch.compile'd update computes the same
losses as the eager one. PyTorch is a benchmark-only dependency: without it these tests skip.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.torch_ports import torch_sac  # noqa: E402  pylint: disable=wrong-import-position

OBS, ACT, HIDDEN, BATCH = 11, 3, (32, 32), 64


def _arrays(size=500, seed=0):
  rng = np.random.default_rng(seed)
  terminal = (rng.uniform(size=size) < 0.1).astype(np.float32)
  return (rng.normal(size=(size, OBS)).astype(np.float32),
          rng.uniform(-1, 1, (size, ACT)).astype(np.float32),
          rng.normal(size=size).astype(np.float32),
          rng.normal(size=(size, OBS)).astype(np.float32), terminal)


def _agent(freeze=True, seed=0):
  torch.manual_seed(seed)
  return torch_sac.TorchSAC(OBS, ACT, hidden_sizes=HIDDEN, freeze_critics_in_actor=freeze)


def _state(agent):
  """Every parameter and every optimizer state tensor of the agent, as a flat list of copies."""
  tensors = [p.detach().clone() for p in agent.parameters()]
  for opt in (agent.critic_opt, agent.actor_opt, agent.alpha_opt):
    for state in opt.state.values():
      tensors += [v.detach().clone() for _, v in sorted(state.items())]
  return tensors


def _batch(seed=1):
  replay = torch_sac.DeviceReplay(*_arrays())
  torch.manual_seed(seed)
  return replay.sample(BATCH)


def _critic_step(agent, batch):
  alpha = agent.log_alpha.exp().detach()
  agent.critic_step(*batch, alpha)
  return alpha


@pytest.mark.parametrize("freeze", [True, False])
def test_actor_step_and_critic_gradients(freeze):
  """Frozen: the actor backward leaves every critic .grad as it was (None stays None, a set one
  unchanged) and still reaches the actor. Unfrozen (the old form): it writes critic gradients,
  so this test would see the waste."""
  agent = _agent(freeze)
  batch = _batch()
  alpha = _critic_step(agent, batch)
  critic_params = list(agent.critics.parameters())
  assert all(p.grad is not None for p in critic_params)  # the critic step's own gradients
  after_critic_step = [p.grad.clone() for p in critic_params]
  torch.manual_seed(2)
  actor_loss, _ = agent.actor_loss(batch[0], alpha)
  actor_loss.backward()
  grads_unchanged = [torch.equal(p.grad, g) for p, g in zip(critic_params, after_critic_step)]
  assert all(grads_unchanged) == freeze  # unfrozen: some changed (a critic min() never picked
                                         # adds only zeros)
  for p in critic_params:  # and from a clean slate: frozen critics get no .grad at all
    p.grad = None
  for p in agent.actor.parameters():
    p.grad = None
  torch.manual_seed(2)
  actor_loss, _ = agent.actor_loss(batch[0], alpha)
  actor_loss.backward()
  assert all((p.grad is None) == freeze for p in critic_params)
  assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
  assert agent.log_alpha.grad is None  # alpha enters the actor loss as a constant


def test_actor_gradient_equals_reference_through_critics():
  """The frozen actor gradient equals torch.autograd.grad of the old (unfrozen) actor loss with
  respect to the actor's parameters: the critics only lose their unused gradients."""
  agent = _agent(freeze=True)
  batch = _batch()
  alpha = _critic_step(agent, batch)
  actor_params = list(agent.actor.parameters())
  torch.manual_seed(3)
  frozen_loss, _ = agent.actor_loss(batch[0], alpha)
  frozen = torch.autograd.grad(frozen_loss, actor_params)
  agent.freeze_critics_in_actor = False
  torch.manual_seed(3)
  reference_loss, _ = agent.actor_loss(batch[0], alpha)
  reference = torch.autograd.grad(reference_loss, actor_params + list(agent.critics.parameters()))
  torch.testing.assert_close(frozen_loss, reference_loss, rtol=0, atol=0)
  for got, want in zip(frozen, reference[:len(actor_params)]):
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
  assert any(g.abs().sum() > 0 for g in reference[len(actor_params):])  # the wasted work


def test_freezing_leaves_updates_unchanged():
  """Three full updates from the same seed and batches: parameters, targets, temperature and
  every Adam moment agree with and without the freeze (float32 tolerance 1e-6)."""
  results = {}
  for freeze in (True, False):
    agent = _agent(freeze)
    replay = torch_sac.DeviceReplay(*_arrays())
    torch.manual_seed(4)
    losses = [agent.update(replay.sample(BATCH)) for _ in range(3)]
    results[freeze] = (torch.stack(losses), _state(agent))
  (losses_frozen, state_frozen), (losses_old, state_old) = results[True], results[False]
  torch.testing.assert_close(losses_frozen, losses_old, rtol=1e-6, atol=1e-6)
  trainable = [p for p in _agent().parameters() if p.requires_grad]  # actor, critics, log_alpha
  assert len(state_frozen) == len(state_old) == len(_agent().parameters()) + 3 * len(trainable)
  for got, want in zip(state_frozen, state_old):
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
  initial = _state(_agent())
  assert not all(torch.equal(a, b) for a, b in zip(initial, state_frozen))  # it did learn


def test_device_replay_samples_valid_batches():
  size = 10
  arrays = _arrays(size)
  arrays[0][:, 0] = np.arange(size)  # the row number, readable back from a sample
  replay = torch_sac.DeviceReplay(*arrays)
  assert replay.size == size and replay.device == torch.device("cpu")
  torch.manual_seed(5)
  index = replay.sample_indices(BATCH)
  assert index.dtype == torch.int64 and index.shape == (BATCH,)
  assert int(index.min()) >= 0 and int(index.max()) < size
  torch.manual_seed(5)
  batch = replay.sample(BATCH)
  shapes = [(BATCH, OBS), (BATCH, ACT), (BATCH,), (BATCH, OBS), (BATCH,)]
  assert [tuple(t.shape) for t in batch] == shapes
  assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in batch)
  rows = batch[0][:, 0].long()
  assert torch.equal(rows, index)  # same seed, same indices; every field from the same row
  for got, array in zip(batch, arrays):
    np.testing.assert_array_equal(got.numpy(), array[rows.numpy()])
  torch.manual_seed(6)
  many = replay.sample_indices(2000)
  assert set(many.tolist()) == set(range(size))  # every row reachable, the last one included
  assert not torch.equal(replay.sample_indices(BATCH), replay.sample_indices(BATCH))


def test_numpy_replay_matches_shapes():
  replay = torch_sac.NumpyReplay(*_arrays())
  batch = replay.sample(BATCH)
  assert [tuple(t.shape) for t in batch] == [(BATCH, OBS), (BATCH, ACT), (BATCH,), (BATCH, OBS),
                                             (BATCH,)]
  assert all(t.dtype == torch.float32 for t in batch)


def _compile_or_skip():
  """Skips (with the reason) where torch.compile cannot run at all, e.g. no C++ compiler."""
  try:
    torch.compile(lambda x: torch.sin(x) + 1.0)(torch.ones(4))
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f"torch.compile cannot run here: {type(e).__name__}: {e}")


def test_compiled_update_matches_eager():
  """Sampling plus update under torch.compile gives the eager losses and parameters, same seed.

  Inductor's fallback_random makes compiled randomness (torch.randint, randn_like) draw from
  eager's generator, so both see the same batches and noise. Tolerance: rtol 1e-4, atol 1e-5
  (inductor may fuse and reorder float32 reductions).
  """
  _compile_or_skip()
  import torch._inductor.config as inductor_config  # pylint: disable=import-outside-toplevel
  runs = {}
  for compiled in (False, True):
    agent = _agent()
    step = torch_sac.make_step(agent, torch_sac.DeviceReplay(*_arrays()), BATCH)
    if compiled:
      step = torch_sac.compile_step(step)
    torch.manual_seed(7)
    with inductor_config.patch(fallback_random=True):
      losses = torch.stack([step() for _ in range(3)])
    runs[compiled] = (losses, _state(agent))
  (eager_losses, eager_state), (compiled_losses, compiled_state) = runs[False], runs[True]
  assert eager_losses.shape == (3, 3) and torch.isfinite(eager_losses).all()
  torch.testing.assert_close(compiled_losses, eager_losses, rtol=1e-4, atol=1e-5)
  for got, want in zip(compiled_state, eager_state):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
