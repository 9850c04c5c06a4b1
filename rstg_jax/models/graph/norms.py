"""The original's normalisations: TF-contrib LayerNorm, TF-default BatchNorm, and the
choice between them named by `use_norm` ('LN', 'BN' or 'none')."""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

# tf.contrib.layers.layer_norm's epsilon (spec §5.5).
TF_LAYER_NORM_EPSILON = 1e-12


def tf_layer_norm(name: str, num_axes: int, dtype: Any = jnp.float32,
                  use_scale: bool = True) -> nn.LayerNorm:
  """`tf.contrib.layers.layer_norm` (spec §5.5) as a flax `nn.LayerNorm`.

  Statistics per example over the last `num_axes` axes jointly (TF's
  `begin_norm_axis=-num_axes`, e.g. a whole clip [T, N, D]), in float32 even under
  bfloat16 compute and with the two-pass variance; a scale (init 1, optional: the
  residual norm of spec §7.4 has none) and a bias (init 0) of the last axis only
  (`scale`/`bias` of shape [D]); epsilon 1e-12.
  """
  return nn.LayerNorm(epsilon=TF_LAYER_NORM_EPSILON,
                      reduction_axes=tuple(range(-num_axes, 0)), feature_axes=-1,
                      use_fast_variance=False, use_scale=use_scale, dtype=dtype,
                      param_dtype=jnp.float32, name=name)


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
    return tf_layer_norm(f"{name}_ln", num_axes, dtype)
  if kind == "BN":
    return tf_batch_norm(f"{name}_bn", train, dtype)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"unknown normalisation {kind!r} for {name!r}; use 'LN', 'BN' or 'none'")
