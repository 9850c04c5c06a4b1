"""Checkpoints: the only module that talks to Orbax.

A checkpoint step holds two items:
  - `state`: the arrays of the TrainState (step, params, batch_stats,
    opt_state), saved with StandardSave and restored straight into the
    sharded abstract state (every process reads what its devices need);
  - `meta`: a small JSON dict (config, model name, data position).
Retention keeps the last `max_to_keep` steps plus the best one by an evaluation
metric (orbax preservation policies LatestN + BestN). Saves are asynchronous;
call `wait_until_finished()` before reading the directory.

Restoring checks the checkpoint's tree (names and shapes) against the state
this run built, so a workdir holding another model fails with a message naming
the first mismatching parameter instead of an error from deep inside Orbax.
"""
from __future__ import annotations

import os
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from rstg_jax.train.train_state import TrainState


class CheckpointMismatchError(ValueError):
  """The workdir holds a checkpoint of a different model or optimiser."""


def abstract_state(state_shapes: Any, sharding: jax.sharding.Sharding) -> Any:
  """ShapeDtypeStructs (e.g. from jax.eval_shape) with a sharding on every leaf."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      state_shapes)


def _key_name(k: Any) -> str:
  for attr in ("key", "idx", "name"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _shapes_of_template(tree: Any) -> dict[str, tuple[int, ...]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {"/".join(_key_name(k) for k in path): tuple(leaf.shape)
          for path, leaf in flat}


def _shapes_of_metadata(tree: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
  """Walks orbax's metadata tree (dicts/lists; None for empty nodes)."""
  out = {}
  if isinstance(tree, dict):
    items = tree.items()
  elif isinstance(tree, (list, tuple)):
    items = enumerate(tree)
  elif tree is None:
    return out
  else:
    out[prefix] = tuple(getattr(tree, "shape", ()))
    return out
  for k, v in items:
    out.update(_shapes_of_metadata(v, f"{prefix}/{k}" if prefix else str(k)))
  return out


def describe_mismatch(saved: dict[str, tuple[int, ...]],
                       wanted: dict[str, tuple[int, ...]]) -> str | None:
  """A human sentence about the first difference (params first), or None."""
  def order(name):  # params and batch_stats matter most to a reader
    return (0 if name.startswith("params") else
            1 if name.startswith("batch_stats") else 2, name)
  for name in sorted(set(saved) | set(wanted), key=order):
    if name not in saved:
      return f"parameter '{name}' {wanted[name]} of this model is not in the checkpoint"
    if name not in wanted:
      return f"the checkpoint has parameter '{name}' {saved[name]} that this model lacks"
    if saved[name] != wanted[name]:
      return (f"parameter '{name}' has shape {saved[name]} in the checkpoint "
              f"but {wanted[name]} in this model")
  return None


class Checkpointer:
  """Save / restore / retention of training states in `directory`.

  Args:
    directory: where step folders go (created if missing).
    max_to_keep: the last K steps kept.
    best_metric: metrics key used to keep the best step (higher is better);
      steps saved without metrics only count towards the last K.
    async_save: write in a background thread while training continues.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3,
               best_metric: str | None = "eval_top1", async_save: bool = True):
    if max_to_keep < 1:
      raise ValueError(f"config.checkpoint.keep={max_to_keep} must be >= 1")
    self.directory = os.path.abspath(directory)
    self.best_metric = best_metric
    policies = [ocm.LatestN(n=max_to_keep)]
    best_fn = None
    if best_metric:
      best_fn = lambda m: float(m[best_metric])  # noqa: E731
      policies.append(ocm.BestN(get_metric_fn=best_fn, n=1,
                                keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        best_fn=best_fn,  # used by best_step(); retention is the policy below
        best_mode="max",
        preservation_policy=ocm.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save,
        create=True)
    # Handlers up front, so a fresh manager can read an old step's metadata.
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, state: TrainState, meta: dict[str, Any],
           metrics: dict[str, float] | None = None) -> None:
    """Saves `state` at its own step (no-op if that step exists)."""
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return
    self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state.checkpoint_items()),
            meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)

  def check_compatible(self, template: TrainState, step: int) -> None:
    """Raises CheckpointMismatchError if `step` does not fit `template`."""
    saved_tree = self._manager.item_metadata(step)["state"]
    saved_tree = getattr(saved_tree, "tree", saved_tree)
    saved = _shapes_of_metadata(saved_tree)
    wanted = _shapes_of_template(template.checkpoint_items())
    problem = describe_mismatch(saved, wanted)
    if problem:
      raise CheckpointMismatchError(
          f"the workdir checkpoint {self.directory}/{step} was written by a "
          f"different model or optimiser: {problem}. Use another --workdir, or "
          "delete the old checkpoints to start afresh.")

  def restore(self, template: TrainState, step: int | None = None
              ) -> tuple[TrainState, dict[str, Any]]:
    """Restores `step` (default latest) into `template`'s shapes and shardings.

    Args:
      template: a TrainState whose leaves are jax.ShapeDtypeStruct with
        shardings (see `abstract_state`) or concrete arrays.
      step: which step; the latest if None.

    Returns:
      (state, meta).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    self.check_compatible(template, step)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=getattr(x, "sharding", None)),
        template.checkpoint_items())
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                      meta=ocp.args.JsonRestore()))
    logging.info("Restored checkpoint step %d from %s", step, self.directory)
    return template.replace_from_checkpoint(restored["state"]), restored["meta"]

  def restore_arrays(self, step: int | None = None) -> dict[str, Any]:
    """The saved arrays of `step` (default latest) as host numpy, no template."""
    step = self.latest_step() if step is None else step
    # Onto this process's first device, whatever devices wrote it (a
    # checkpoint of an 8-device run read by a 4-device job).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    saved = self._manager.item_metadata(step)["state"]
    saved = getattr(saved, "tree", saved)
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved,
        is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    return jax.device_get(restored["state"])

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
