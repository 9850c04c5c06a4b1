"""Top-k and per-class accuracy, the one rule used by every metric (jnp and numpy).

A label counts as within the top k only if

    (#logits strictly larger than the label's) + (#other logits equal to it) < k,

i.e. ties count against the label: all-equal logits are a miss at every k
below the number of classes, and top-1 needs the label's logit to be the unique
maximum (not `argmax`, where the first of equal logits wins). A row holding a
NaN anywhere is a miss; such rows are also counted (`non_finite_rows`) so that
evaluation can refuse them (`NonFiniteLogitsError`) instead of reporting an
accuracy of a broken model.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class NonFiniteLogitsError(ValueError):
  """Evaluation met NaN/Inf logits in real (unmasked) examples."""


def topk_correct(logits: Any, labels: Any, k: int, *, xp: Any = np) -> Any:
  """[B] bool: the label is among the k largest logits, ties against it.

  Args:
    logits: [B, C] float.
    labels: [B] int in [0, C).
    k: how many top classes count.
    xp: `numpy` or `jax.numpy` (inside jit).
  """
  logits = xp.asarray(logits)
  labels = xp.asarray(labels).astype(xp.int32)
  true = xp.take_along_axis(logits, labels[:, None], axis=-1)       # [B, 1]
  larger = xp.sum(logits > true, axis=-1)
  equal_others = xp.sum(logits == true, axis=-1) - 1                # minus itself
  has_nan = xp.any(xp.isnan(logits), axis=-1)
  return (larger + equal_others < k) & ~has_nan


def per_class_accuracy(correct: Any, total: Any) -> np.ndarray:
  """[C] float64 correct / total per class; NaN for a class without examples."""
  correct = np.asarray(correct, np.float64)
  total = np.asarray(total, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def non_finite_rows(logits: Any, *, xp: Any = np) -> Any:
  """[B] bool: the row holds a NaN or an Inf."""
  return ~xp.all(xp.isfinite(xp.asarray(logits)), axis=-1)


def check_finite(num_bad: int, num_total: int, where: str, what: str = "examples") -> None:
  """Raises NonFiniteLogitsError if `num_bad` > 0."""
  if num_bad:
    raise NonFiniteLogitsError(
        f"{where}: {num_bad} of {num_total} {what} had NaN/Inf logits; their accuracy "
        "would be meaningless (the model diverged or its input is broken)")
