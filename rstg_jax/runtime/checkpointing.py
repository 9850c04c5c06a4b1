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

A damaged step (a truncated data file, a metadata file that is not valid JSON:
what a full disk or a copy cut short leaves) does not stop a resume:
`restore()` logs a warning naming the step and the damaged file, and falls
back to the newest earlier step that restores cleanly (`last_restore` says
which, and which were damaged). The damaged steps are never deleted: they are
moved, unchanged, to `<directory>/damaged/<step>-<UTC time>/`, out of Orbax's
sight. Left in place they would be lost anyway: the retention policy deletes
them once newer steps exist, and a new save of the same step number would be
skipped because the number is taken. Only when no step restores is an error
raised (CheckpointDamagedError), and then nothing is moved.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
from typing import Any, Protocol, TypeVar

from absl import logging
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm


class Checkpointable(Protocol):
  """What a checkpoint needs of a training state (rstg_jax.train.train_state.TrainState
  has it); this module never imports train/."""
  step: Any

  def checkpoint_items(self) -> dict[str, Any]:
    """The arrays to save, as a plain dict."""

  def replace_from_checkpoint(self, items: dict[str, Any]) -> Any:
    """A copy with the arrays of `checkpoint_items()` replaced by restored ones."""


State = TypeVar("State", bound=Checkpointable)


class CheckpointMismatchError(ValueError):
  """The workdir holds a checkpoint of a different model or optimiser."""


class CheckpointDamagedError(ValueError):
  """A checkpoint step cannot be read (truncated or corrupt files)."""


DAMAGED_DIR = "damaged"

# What reading a damaged step raises: tensorstore's errors are ValueErrors
# (OUT_OF_RANGE, DATA_LOSS ...), JSONDecodeError is one too; a missing file is
# an OSError; Orbax's own checks raise these as well.
_READ_ERRORS = (ValueError, OSError, KeyError, TypeError, EOFError)


@dataclasses.dataclass(frozen=True)
class RestoreInfo:
  """What `Checkpointer.restore` did: the step restored, the damaged ones skipped."""
  step: int
  damaged: tuple[tuple[int, str], ...] = ()  # (step, description naming the file)
  moved_to: tuple[str, ...] = ()             # where the damaged steps now are


def _damaged_file(step_dir: str, error: BaseException) -> str:
  """The file of `step_dir` at fault, as well as it can be found."""
  # A JSON metadata file that does not parse (Orbax's _CHECKPOINT_METADATA,
  # the items' _METADATA / _sharding / metadata, the array metadatas).
  for root, _, files in sorted(os.walk(step_dir)):
    for name in sorted(files):
      if name == "commit_success.txt" or os.path.basename(root) == "d":
        continue
      path = os.path.join(root, name)
      if name.endswith(".ocdbt"):
        if os.path.getsize(path) == 0:
          return f"{path} (empty)"
        continue
      try:
        with open(path, "rb") as f:
          json.loads(f.read().decode("utf-8"))
      except (ValueError, UnicodeDecodeError) as e:
        return f"{path} (not valid JSON: {e})"
      except OSError as e:
        return f"{path} ({e})"
  # tensorstore names the file it could not read in its message.
  files = re.findall(r'local file \\?"([^"\\]+)\\?"', str(error))
  files = [f for f in files if os.path.isfile(f)] or files
  if files:
    reason = re.search(r"(Requested byte range[^\]\"]*|is not valid[^\]\"]*)", str(error))
    return f"{files[-1]}" + (f" ({reason.group(1).strip()})" if reason else "")
  first_line = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
  return f"a file of {step_dir} ({type(error).__name__}: {first_line})"


def abstract_state(state_shapes: Any, sharding: jax.sharding.Sharding) -> Any:
  """ShapeDtypeStructs (e.g. from jax.eval_shape) with a sharding on every leaf."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      state_shapes)


def _shapes_of_template(tree: Any) -> dict[str, tuple[int, ...]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
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
    self.last_restore: RestoreInfo | None = None
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

  def save(self, state: Checkpointable, meta: dict[str, Any],
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

  def check_compatible(self, template: State, step: int) -> None:
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

  def restore(self, template: State, step: int | None = None
              ) -> tuple[State, dict[str, Any]]:
    """Restores `step` (default: the newest that reads) into `template`.

    Args:
      template: a state (e.g. TrainState) whose leaves are jax.ShapeDtypeStruct with
        shardings (see `abstract_state`) or concrete arrays.
      step: which step; None: the latest, falling back to the newest earlier
        step that restores cleanly when it is damaged (the damaged steps are
        moved to `<directory>/damaged/`, see the module docstring).

    Returns:
      (state, meta); `state.step` and `self.last_restore` (RestoreInfo) say
      which step it was.

    Raises:
      FileNotFoundError: no checkpoint.
      CheckpointMismatchError: the step was written by another model.
      CheckpointDamagedError: the given step, or every step, cannot be read;
        the message names each step and its damaged file.
    """
    if step is not None:
      try:
        state, meta = self._restore_step(template, step)
      except CheckpointMismatchError:
        raise
      except _READ_ERRORS as e:
        raise CheckpointDamagedError(
            f"checkpoint step {step} in {self.directory} is damaged: "
            f"{_damaged_file(self._step_dir(step), e)}") from e
      self.last_restore = RestoreInfo(step)
      return state, meta
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    damaged: list[tuple[int, str]] = []
    for candidate in steps:
      try:
        state, meta = self._restore_step(template, candidate)
      except CheckpointMismatchError:
        raise
      except _READ_ERRORS as e:
        where = _damaged_file(self._step_dir(candidate), e)
        damaged.append((candidate, where))
        logging.warning("Checkpoint step %d (%s) is damaged: %s; trying the previous "
                        "step", candidate, self._step_dir(candidate), where)
        continue
      moved = self._move_aside([s for s, _ in damaged]) if damaged else []
      if damaged:
        logging.warning(
            "Restored checkpoint step %d instead of the latest step %d, which is "
            "damaged; the damaged step(s) %s were not deleted but moved to %s",
            candidate, steps[0], [s for s, _ in damaged], moved)
      self.last_restore = RestoreInfo(candidate, tuple(damaged), tuple(moved))
      return state, meta
    raise CheckpointDamagedError(
        f"no checkpoint in {self.directory} can be restored; every step is damaged "
        "(nothing was deleted or moved): "
        + "; ".join(f"step {s}: {where}" for s, where in damaged))

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _restore_step(self, template: State, step: int
                    ) -> tuple[State, dict[str, Any]]:
    self.check_compatible(template, step)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=getattr(x, "sharding", None)),
        template.checkpoint_items())
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                      meta=ocp.args.JsonRestore()))
    if not isinstance(restored["meta"], dict):
      raise ValueError(f"{self._step_dir(step)}/meta holds {type(restored['meta'])}, "
                       "not a JSON object")
    logging.info("Restored checkpoint step %d from %s", step, self.directory)
    return template.replace_from_checkpoint(restored["state"]), restored["meta"]

  def _move_aside(self, steps: list[int]) -> list[str]:
    """Moves damaged step folders to <directory>/damaged/; returns the new paths.

    Process 0 moves (the folders are shared), every process waits for it and
    then re-reads the step list.
    """
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    targets = [os.path.join(self.directory, DAMAGED_DIR, f"{s}-{stamp}") for s in steps]
    if jax.process_index() == 0:
      os.makedirs(os.path.join(self.directory, DAMAGED_DIR), exist_ok=True)
      for s, target in zip(steps, targets):
        os.replace(self._step_dir(s), target)  # a rename: nothing is rewritten
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("rstg_checkpoint_moved_aside")
    self._manager.reload()
    return targets

  def restore_arrays(self, step: int | None = None) -> dict[str, Any]:
    """The saved arrays of `step` (default latest) as host numpy, no template."""
    step = self.latest_step() if step is None else step
    # Onto this process's first device, whatever devices wrote it (a
    # checkpoint of an 8-device run read by a 4-device job).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    try:
      saved = self._manager.item_metadata(step)["state"]
      saved = getattr(saved, "tree", saved)
      target = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved,
          is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    except _READ_ERRORS as e:
      raise CheckpointDamagedError(
          f"checkpoint step {step} in {self.directory} is damaged: "
          f"{_damaged_file(self._step_dir(step), e)}") from e
    return jax.device_get(restored["state"])

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    """The JSON `meta` item of `step` (default latest): config, class names ..."""
    step = self.latest_step() if step is None else step
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except _READ_ERRORS as e:
      raise CheckpointDamagedError(
          f"checkpoint step {step} in {self.directory} is damaged: "
          f"{_damaged_file(self._step_dir(step), e)}") from e
    meta = restored["meta"]
    return meta if isinstance(meta, dict) else {}

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
