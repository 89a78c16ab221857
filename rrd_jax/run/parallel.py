"""Device meshes and shardings. Offline: a 1-D `data` mesh; batches split over it, state
replicated. Online populations: a 1-D `members` mesh; member-stacked pytrees split over it."""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
MEMBER_AXIS = "members"


def make_mesh(data_axis_size=-1):
  """A 1-D `data` mesh over the first `data_axis_size` devices (-1: all, across processes)."""
  devices = jax.devices()
  if data_axis_size != -1:
    if not 1 <= data_axis_size <= len(devices):
      raise ValueError(f"mesh.data must be -1 or in 1..{len(devices)}, got {data_axis_size}")
    devices = devices[:data_axis_size]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh):
  """Leading (batch) axis split over `data`, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh):
  return NamedSharding(mesh, P())


def member_devices(num_members, requested=0):
  """How many local devices a population of `num_members` is split over: `requested`, or with 0
  the largest local device count that divides num_members. ValueError names a bad request."""
  available = len(jax.local_devices())
  if requested == 0:
    return max(n for n in range(1, min(available, num_members) + 1) if num_members % n == 0)
  if not 1 <= requested <= available or num_members % requested:
    raise ValueError(f"population.devices must be 0 (auto) or a number of devices in 1..{available} "
                     f"that divides the {num_members} members, got {requested}")
  return requested


def member_sharding(num_devices):
  """The leading (member) axis split over the first num_devices local devices."""
  mesh = Mesh(np.asarray(jax.local_devices()[:num_devices]), (MEMBER_AXIS,))
  return NamedSharding(mesh, P(MEMBER_AXIS))


def available_bytes(device):
  """Memory a device has free: the accelerator's limit less what is in use, or (backends without
  memory statistics, e.g. CPU) the host's available RAM; None if neither is known."""
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  (backends without memory statistics)
    stats = None
  if stats and stats.get("bytes_limit"):
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
  return host_available_bytes()


def host_available_bytes():
  """The host's available RAM (/proc/meminfo MemAvailable), or None where it cannot be read."""
  try:
    with open("/proc/meminfo", encoding="utf-8") as f:
      info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024
  except (OSError, KeyError, ValueError):
    return None


def to_global(local_batch, sharding):
  """This process's numpy batch (its slice of the global batch) -> global jax arrays."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def initialize_distributed(coordinator_address="", num_processes=0, process_id=-1):
  """Joins a multi-process JAX job: from explicit flags, or auto-detected under SLURM (several
  tasks) or on a TPU VM slice; a no-op for a single process. Returns the process count."""
  if coordinator_address:
    # Collectives between CPU processes (tests, CPU clusters); accelerators use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 or os.environ.get("TPU_WORKER_HOSTNAMES"):
    jax.distributed.initialize()
  return jax.process_count()


def process_rows(num_rows):
  """This process's contiguous [lo, hi) slice of a global batch of `num_rows` rows."""
  count, index = jax.process_count(), jax.process_index()
  if num_rows % count:
    raise ValueError(f"a global batch of {num_rows} rows does not split over {count} processes")
  per_process = num_rows // count
  return index * per_process, (index + 1) * per_process


def is_main_process():
  return jax.process_index() == 0


def broadcast_from_main(value):
  """A small numpy value as decided by process 0, on every process."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return multihost_utils.broadcast_one_to_all(np.asarray(value))


def gather_from_processes(value):
  """A small numpy value from every process, stacked [process_count, ...], on every process."""
  if jax.process_count() == 1:
    return np.asarray(value)[None]
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(np.asarray(value)))
