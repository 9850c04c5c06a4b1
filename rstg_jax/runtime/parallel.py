"""Data parallelism: a ('data',) mesh, shardings, host-local -> global arrays.

The batch is sharded along its leading axis over every device of the mesh and
the training state is replicated; train steps donate the state. Because the
steps see global arrays, BatchNorm statistics and metrics are computed over the
global batch (synchronised BatchNorm), whatever the device count.

Multi-host: each process loads only its own slice of the global batch
(`per_process_batch_size`) and `host_to_global` assembles the global array
with `jax.make_array_from_process_local_data`. The same code runs on one CPU,
one GPU or many hosts.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes).

  `jax.make_mesh` orders the devices for the hardware (a ring on TPU). Its axes are
  `Auto` here (its default became `Explicit`): shardings come from the jit's
  in/out_shardings, not from the array types.
  """
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh, field: str) -> None:
  """Fails clearly when a global batch cannot be split over the devices."""
  n = mesh.devices.size
  if global_batch <= 0 or global_batch % n:
    raise ValueError(
        f"{field}={global_batch} must be a positive multiple of the number of "
        f"devices ({n}); e.g. {field}={max(n, -(-global_batch // n) * n)}")
  if global_batch % jax.process_count():
    raise ValueError(
        f"{field}={global_batch} must divide by the number of processes "
        f"({jax.process_count()})")


def per_process_batch_size(global_batch: int, mesh: Mesh, field: str) -> int:
  """The slice of the global batch that this process loads."""
  check_batch_size(global_batch, mesh, field)
  return global_batch // jax.process_count()


def host_to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles this process's slice of every array into a global jax.Array."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts a host pytree (same on every process) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def jit_train_step(step_fn: Callable, mesh: Mesh) -> Callable:
  """jit(step_fn(state, batch) -> (state, metrics)): state replicated and donated."""
  repl, data = replicated(mesh), batch_sharding(mesh)
  return jax.jit(step_fn, in_shardings=(repl, data), out_shardings=(repl, repl),
                 donate_argnums=(0,))


def jit_eval_step(step_fn: Callable, mesh: Mesh) -> Callable:
  """jit(step_fn(state, batch) -> metrics) with a replicated result."""
  repl, data = replicated(mesh), batch_sharding(mesh)
  return jax.jit(step_fn, in_shardings=(repl, data), out_shardings=repl)
