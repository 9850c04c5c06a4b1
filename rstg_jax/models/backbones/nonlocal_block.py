"""Embedded-Gaussian space-time Non-Local block (Wang et al. 2018), as the RSTG baseline.

Spec §8.4: theta on x, phi and g on x max-pooled 1x2x2, softmax over the keys of
theta.phi scaled by inner**-0.5, output 1x1x1 conv and a BatchNorm whose gamma starts at
zero, added to x. This is the post-fix (Aug 2020) channels-last behaviour; the
published-era reshape bug (spec §14.13) is not reproduced.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from rstg_jax.models.backbones.video_conv import VideoConv

# video-nonlocal-net initialises the block's convolutions with N(0, 0.01).
_CONV_INIT = nn.initializers.normal(stddev=0.01)


class NonLocalBlock(nn.Module):
  """Non-local residual block; output equals its input at initialisation.

  Parameter names inside the block are `theta`, `phi`, `g`, `out`, `bn`, so that the
  original's `nonlocal_conv3_1_theta` is this module's path joined by '_'.

  Attributes:
    norm: BatchNorm factory (see `batch_norm.backbone_norm`).
    inner_dim: embedding width; None means C // 2 (the original).
    dtype: compute dtype (parameters stay float32).
  """
  norm: Callable[..., nn.Module]
  inner_dim: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, H, W, C] -> [B, T, H, W, C]."""
    b, t, h, w, c = x.shape
    inner = self.inner_dim or c // 2

    def conv(features, name):
      return VideoConv(features, (1, 1, 1), use_bias=True, kernel_init=_CONV_INIT,
                       dtype=self.dtype, name=name)

    # Keys and values are sub-sampled spatially (not in time): 4x fewer keys.
    pooled = nn.max_pool(x, (1, 2, 2), strides=(1, 2, 2), padding="VALID")
    theta = conv(inner, "theta")(x).reshape(b, t * h * w, 1, inner)
    phi = conv(inner, "phi")(pooled).reshape(b, -1, 1, inner)
    g = conv(inner, "g")(pooled).reshape(b, -1, 1, inner)
    # One head of width `inner`; the library computes the softmax in float32 and can
    # use a fused kernel on GPU. Its default scale is inner**-0.5, as in the original.
    y = jax.nn.dot_product_attention(theta, phi, g, scale=inner ** -0.5)
    y = y.reshape(b, t, h, w, inner)
    y = conv(c, "out")(y)
    y = self.norm(name="bn", scale_init=nn.initializers.zeros)(y)
    return x + y.astype(x.dtype)
