"""`config.init_from`: start from (or evaluate) the weights of another checkpoint.

A source is a workdir (its latest checkpoint), its `checkpoints/` folder, one
step folder (`workdir/checkpoints/1200`), or an imported checkpoint of the
original models (`rstg_jax.tools.import_checkpoint`, laid out like a workdir).
Only `params` and `batch_stats` are read, so the source's optimiser may differ.

Fine-tuning (`merge_for_fine_tuning`), as the paper did from Kinetics: every
parameter of this model that the source holds with the same shape is loaded
(the backbone); parameters the source lacks keep this model's initialisation
(a graph inserted into a backbone: its residual scale starts at zero, so the
model starts as the backbone); the classifier `pred` is re-initialised when
its class count differs (Kinetics 400 -> Something-Something 174); source
parameters this model lacks are dropped. Any other shape difference means the
source is another model, and is an error naming the parameter.

Evaluation (`check_exact`): every parameter and statistic must match.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from flax import traverse_util
import numpy as np

from rstg_jax.runtime import checkpointing

HEAD_PREFIXES = ("pred/",)  # re-initialised when the class count differs


class InitFromError(ValueError):
  """config.init_from names no checkpoint, or one that cannot initialise this model."""


def resolve(path: str) -> tuple[str, int | None]:
  """(checkpoints directory, step or None for the latest) of an init_from path."""
  p = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(p):
    raise InitFromError(f"config.init_from={path!r}: no such file or folder")

  def steps_in(folder):
    return [d for d in os.listdir(folder) if d.isdigit()
            and os.path.isdir(os.path.join(folder, d))] if os.path.isdir(folder) else []

  if steps_in(os.path.join(p, "checkpoints")):
    return os.path.join(p, "checkpoints"), None
  if os.path.basename(p).isdigit() and os.path.isdir(p):
    return os.path.dirname(p), int(os.path.basename(p))
  if steps_in(p):
    return p, None
  raise InitFromError(
      f"config.init_from={path!r} holds no checkpoint: expected a workdir with "
      "checkpoints/<step>/, a checkpoints folder, or a step folder")


def load(path: str) -> tuple[dict[str, Any], str]:
  """({'params', 'batch_stats'} as host arrays, 'DIR/STEP') of an init_from path."""
  directory, step = resolve(path)
  ckpt = checkpointing.Checkpointer(directory, best_metric=None, async_save=False)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None or step not in ckpt.all_steps():
      raise InitFromError(f"config.init_from={path!r}: no checkpoint step {step} in "
                          f"{directory}")
    arrays = ckpt.restore_arrays(step)
  finally:
    ckpt.close()
  return ({"params": arrays.get("params") or {},
           "batch_stats": arrays.get("batch_stats") or {}},
          os.path.join(directory, str(step)))


def _flat(tree: Any) -> dict[str, Any]:
  return traverse_util.flatten_dict(tree, sep="/") if tree else {}


@dataclasses.dataclass
class MergeReport:
  """What fine-tuning initialisation did with every tensor."""
  source: str
  loaded: list[str]
  initialised: list[str]        # the source lacks them
  reinitialised: list[str]      # head with another class count: 'name (src -> ours)'
  dropped: list[str]            # in the source only
  loaded_params: int

  def lines(self) -> list[str]:
    def groups(names):
      counts: dict[str, int] = {}
      for n in names:
        key = "/".join(n.split("/")[:3 if n.startswith("batch_stats") else 2])
        counts[key] = counts.get(key, 0) + 1
      return ", ".join(f"{k} ({v})" for k, v in sorted(counts.items())) or "none"
    return [f"init_from {self.source}:",
            f"  loaded {len(self.loaded)} tensors ({self.loaded_params:,} values): "
            f"{groups(self.loaded)}",
            f"  initialised (not in the source) {len(self.initialised)}: "
            f"{groups(self.initialised)}",
            f"  re-initialised (other class count) {len(self.reinitialised)}: "
            f"{', '.join(self.reinitialised) or 'none'}",
            f"  dropped (not in this model) {len(self.dropped)}: {groups(self.dropped)}"]


def merge_for_fine_tuning(params: Any, batch_stats: Any, source: dict[str, Any],
                          source_name: str) -> tuple[Any, Any, MergeReport]:
  """This model's (params, batch_stats) with the source's tensors loaded into them."""
  ours = {**{f"params/{k}": v for k, v in _flat(params).items()},
          **{f"batch_stats/{k}": v for k, v in _flat(batch_stats).items()}}
  theirs = {**{f"params/{k}": v for k, v in _flat(source["params"]).items()},
            **{f"batch_stats/{k}": v for k, v in _flat(source["batch_stats"]).items()}}
  out, loaded, initialised, reinit, wrong = {}, [], [], [], []
  n_values = 0
  for name, value in ours.items():
    src = theirs.get(name)
    if src is None:
      out[name] = value
      initialised.append(name)
    elif tuple(np.shape(src)) == tuple(np.shape(value)):
      out[name] = np.asarray(src).astype(value.dtype)
      loaded.append(name)
      n_values += int(np.size(src))
    elif name.split("/", 1)[1].startswith(HEAD_PREFIXES):
      out[name] = value
      reinit.append(f"{name} {tuple(np.shape(src))} -> {tuple(np.shape(value))}")
    else:
      wrong.append(f"'{name}' has shape {tuple(np.shape(src))} in the source but "
                   f"{tuple(np.shape(value))} in this model")
  if wrong:
    raise InitFromError(f"config.init_from={source_name} is another model: "
                        f"{wrong[0]}" + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1
                                         else ""))
  if not any(n.startswith("params/") for n in loaded):
    raise InitFromError(f"config.init_from={source_name}: none of its parameters "
                        "fits this model (another model?)")
  dropped = sorted(set(theirs) - set(ours))
  nested = traverse_util.unflatten_dict(out, sep="/")
  report = MergeReport(source_name, loaded, initialised, reinit, dropped, n_values)
  return nested["params"], nested.get("batch_stats", {}), report


def check_exact(params: Any, batch_stats: Any, source: dict[str, Any],
                source_name: str) -> None:
  """Raises CheckpointMismatchError naming the first tensor that differs."""
  def shapes(p, s):
    return {**{f"params/{k}": tuple(np.shape(v)) for k, v in _flat(p).items()},
            **{f"batch_stats/{k}": tuple(np.shape(v)) for k, v in _flat(s).items()}}
  problem = checkpointing.describe_mismatch(
      shapes(source["params"], source["batch_stats"]), shapes(params, batch_stats))
  if problem:
    raise checkpointing.CheckpointMismatchError(
        f"config.init_from={source_name} is not a checkpoint of this model: {problem}")
