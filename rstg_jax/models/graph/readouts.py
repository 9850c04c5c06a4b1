"""Read-outs of the graph's node outputs and the zero-initialised residual norm (spec §7)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from rstg_jax.models.graph import area_resize
from rstg_jax.models.graph.norms import tf_batch_norm, tf_layer_norm


def to_vec(out: jnp.ndarray) -> jnp.ndarray:
  """RSTG-to-vec: [B, T, N, C] -> [B, C], mean over time then SUM over nodes (§7.2)."""
  return jnp.sum(jnp.mean(out, axis=1), axis=1)


def to_map(out: jnp.ndarray, scales: tuple[int, ...], height: int, width: int) -> jnp.ndarray:
  """RSTG-to-map: [B, T, N, C] -> [B, T, H, W, C], per-scale area up-sampling, summed."""
  return area_resize.nodes_to_map(out, scales, height, width)


class ResidualNorm(nn.Module):
  """The norm on the graph branch whose output is exactly zero at initialisation (§7.4).

  'LN': TF-contrib LN without scale (bias only, init 0) over the last `num_axes` axes,
  times a separate per-channel scale initialised to zeros (`after_graph_ln_scale`).
  'BN': BatchNorm with its scale initialised to zero. 'none': identity (SyncMNIST).
  """
  kind: str = "LN"
  num_axes: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, y: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    if self.kind == "none":
      return y
    if self.kind == "LN":
      y = tf_layer_norm("after_graph_ln", self.num_axes, self.dtype, use_scale=False)(y)
      scale = self.param("after_graph_ln_scale", nn.initializers.zeros, (y.shape[-1],),
                         jnp.float32)
      return y * scale.astype(y.dtype)
    if self.kind == "BN":
      return tf_batch_norm("after_graph_bn", train, self.dtype,
                           scale_init=nn.initializers.zeros)(y)
    raise ValueError(f"unknown residual_norm {self.kind!r}; use 'LN', 'BN' or 'none'")
