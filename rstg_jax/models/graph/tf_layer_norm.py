"""LayerNorm with TF-contrib semantics, as the original used everywhere (spec §5.5).

`tf.contrib.layers.layer_norm` takes statistics over every axis from `begin_norm_axis`
to the last (so several axes jointly, e.g. a whole clip [T, N, D]) but keeps a scale and a
bias of the last axis only, and uses epsilon 1e-12. flax's `nn.LayerNorm` can reduce over
several axes but then shapes its parameters over all of them, hence this small module.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class TFLayerNorm(nn.Module):
  """Per-example normalisation over the last `num_axes` axes; per-channel affine.

  Attributes:
    num_axes: how many trailing axes the statistics span (channels included).
    use_scale: learn a per-channel scale (init 1); the residual norm of spec §7.4 has none.
    use_bias: learn a per-channel bias (init 0).
    epsilon: 1e-12 as in the original.
  """
  num_axes: int
  use_scale: bool = True
  use_bias: bool = True
  epsilon: float = 1e-12
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if x.ndim < self.num_axes:
      raise ValueError(
          f"{self.name}: input of shape {x.shape} has fewer than {self.num_axes} axes")
    axes = tuple(range(x.ndim - self.num_axes, x.ndim))
    # Statistics in float32 even under bfloat16 compute (float64 stays float64).
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(xf, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=axes, keepdims=True)
    y = (xf - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon))
    features = x.shape[-1]
    if self.use_scale:
      y = y * self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    return y.astype(self.dtype)
