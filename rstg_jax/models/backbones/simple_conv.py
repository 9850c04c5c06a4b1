"""SimpleConv: the SyncMNIST backbone of the original code (spec §8.1)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """2x2 / stride 2 VALID max-pool of [N, H, W, C] (odd edges dropped).

  Same values as nn.max_pool; written as reshape + max because the gradient
  of XLA's windowed max-pool (select-and-scatter) is about twice as slow on
  CPU. Gradients differ only where a window holds tied maxima, which after a
  ReLU means zeros, whose gradient the ReLU stops anyway.
  """
  n, h, w, c = x.shape
  h2, w2 = h // 2, w // 2
  x = x[:, :2 * h2, :2 * w2]
  return x.reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


class SimpleConv(nn.Module):
  """Three (3x3 VALID conv with bias, ReLU, 2x2 max-pool) stages, per frame.

  The original feeds raw 0-255 pixel values (no normalisation); so does this
  module by default: a uint8 video is only cast to the compute dtype and
  multiplied by `input_scale` (1.0). With Adam and 0-255 inputs the conv
  biases are tiny next to the pre-activations and barely move the ReLU
  thresholds; `input_scale=1/255` puts pixels in [0, 1]. Spatial sizes for a
  64x64 input: 64 -> 62 -> 31 -> 29 -> 14 -> 12 -> 6.

  With `temporal_kernel` k > 1 (not in the paper: the 3-D-convolution baseline)
  every conv is k x 3 x 3 over (time, height, width), zero-padded in time so the
  frame count stays, VALID in space; pooling stays per frame.

  Attributes:
    width: filters of every conv (512 in the paper).
    num_stages: conv/pool stages (3 in the paper).
    temporal_kernel: temporal extent of every conv (1 in the paper; odd).
    input_scale: factor applied to the pixels (1.0 in the paper).
    dtype: compute dtype; parameters stay float32.
  """

  width: int = 512
  num_stages: int = 3
  temporal_kernel: int = 1
  input_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video: jnp.ndarray) -> jnp.ndarray:
    """Maps a video [B, T, H, W, C] (0-255) to a feature map [B, T, H', W', width]."""
    if video.ndim != 5:
      raise ValueError(
          f"SimpleConv expects a video [B, T, H, W, C]; got shape {video.shape}")
    kt = self.temporal_kernel
    if kt < 1 or kt % 2 == 0:
      raise ValueError(f"SimpleConv temporal_kernel must be odd and >= 1, got {kt}")
    b, t = video.shape[:2]
    x = video.astype(self.dtype)
    if self.input_scale != 1.0:
      x = x * jnp.asarray(self.input_scale, self.dtype)
    # Fold time into the batch: frames are independent for 2-D convs, and pooling
    # is per frame either way.
    x = x.reshape((b * t,) + x.shape[2:])
    for i in range(self.num_stages):
      if kt == 1:
        x = nn.Conv(self.width, (3, 3), padding="VALID", use_bias=True,
                    dtype=self.dtype, name=f"conv{i + 1}")(x)
      else:
        x = x.reshape((b, t) + x.shape[1:])
        x = nn.Conv(self.width, (kt, 3, 3), use_bias=True, dtype=self.dtype,
                    padding=((kt // 2, kt // 2), (0, 0), (0, 0)),
                    name=f"conv{i + 1}")(x)
        x = x.reshape((b * t,) + x.shape[2:])
      x = nn.relu(x)
      x = max_pool_2x2(x)
    return x.reshape((b, t) + x.shape[1:])
