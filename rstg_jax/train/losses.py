"""Classification loss."""
from __future__ import annotations

import jax.numpy as jnp
import optax

REDUCTIONS = ("mean", "sum")


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, *,
                  reduction: str = "mean") -> jnp.ndarray:
  """Softmax cross-entropy with integer labels, reduced over the batch.

  Args:
    logits: [B, num_classes].
    labels: [B] int.
    reduction: 'mean' (the usual choice: the learning rate does not depend on
      the batch size) or 'sum': the original code's gradient, which is that of
      the summed per-example loss over the (global) batch (spec §9.1).

  Returns:
    A scalar.
  """
  if reduction not in REDUCTIONS:
    raise ValueError(f"loss_reduction={reduction!r} is not one of {REDUCTIONS}")
  per_example = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)
  return per_example.mean() if reduction == "mean" else per_example.sum()
