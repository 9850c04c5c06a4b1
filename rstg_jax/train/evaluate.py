"""Evaluation over a whole split with padded, masked batches."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import jax
from jax.sharding import Mesh
import numpy as np

from rstg_jax.runtime import parallel
from rstg_jax.train import topk


def evaluate(eval_step: Callable, state: Any, batches: Iterable[dict[str, np.ndarray]],
             mesh: Mesh, *, expected_examples: int | None = None) -> dict[str, Any]:
  """Runs a jitted eval step over every batch and merges the metrics.

  Args:
    eval_step: jit(eval_step)(state, global_batch) -> EvalMetrics
      (see parallel.jit_eval_step).
    state: the train state.
    batches: this process's batches (with `mask`), e.g. an EvalInput; every
      process must yield the same number of batches.
    mesh: the device mesh.
    expected_examples: if given, the number of real examples the split holds
      over all processes; a different count raises (every video must count
      exactly once).

  Returns:
    The computed metrics: scalars `loss`, `top1`, `top5`, `num_examples`,
    `non_finite_logits` (0) and `per_class_top1` [num_classes] (NaN for
    absent classes); when the step returns (metrics, outputs) (see
    steps.make_eval_step), also `outputs`: each output of every batch
    concatenated, e.g. 'logits' [N, K] (padding rows included, see 'mask'; a
    replicated step gives every process the rows of all processes).

  Raises:
    topk.NonFiniteLogitsError: some real examples had NaN/Inf logits (their
      accuracy would be meaningless; a NaN row would otherwise just count as
      a miss).
  """
  merged = None
  parts: dict[str, list[Any]] = {}
  for batch in batches:
    m = eval_step(state, parallel.host_to_global(batch, mesh))
    if isinstance(m, tuple):
      m, outputs = m
      for k, v in outputs.items():   # kept on the device: no wait per batch
        parts.setdefault(k, []).append(v)
    merged = m if merged is None else merged.merge(m)
  if merged is None:
    raise ValueError("evaluation got no batches")
  out = {k: np.asarray(v) for k, v in merged.compute().items()}
  if parts:
    out["outputs"] = {k: np.concatenate([np.asarray(x) for x in jax.device_get(v)])
                      for k, v in parts.items()}
  if "non_finite_logits" in out:
    topk.check_finite(int(out["non_finite_logits"]), int(out["num_examples"]), "evaluation")
  if expected_examples is not None and int(out["num_examples"]) != expected_examples:
    raise AssertionError(
        f"evaluation counted {int(out['num_examples'])} examples but the split "
        f"holds {expected_examples}")
  return out

