"""Picks the normalisation named by `use_norm` ('LN', 'BN' or 'none')."""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from rstg_jax.models.graph.tf_layer_norm import TFLayerNorm


def tf_batch_norm(name: str, train: bool, dtype: Any = jnp.float32,
                  **kwargs) -> nn.BatchNorm:
  """`tf.layers.batch_normalization` defaults (momentum 0.99, eps 1e-3); batch statistics
  when `train`, moving averages otherwise."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                      dtype=dtype, name=name, **kwargs)


def make_norm(kind: str, name: str, num_axes: int, train: bool,
              dtype: Any = jnp.float32) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """Returns the norm `{name}_ln` / `{name}_bn` or the identity.

  Args:
    kind: 'LN' (TF-contrib LN over the last `num_axes` axes, spec §5.5), 'BN'
      (TF defaults: momentum 0.99, eps 1e-3; batch statistics when `train`) or 'none'.
    name: prefix of the parameter scope, as in the original (e.g. 'message').
    num_axes: trailing axes the LN statistics span.
    train: BatchNorm mode.
  """
  if kind == "LN":
    return TFLayerNorm(num_axes=num_axes, name=f"{name}_ln", dtype=dtype)
  if kind == "BN":
    return tf_batch_norm(f"{name}_bn", train, dtype)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"unknown normalisation {kind!r} for {name!r}; use 'LN', 'BN' or 'none'")
