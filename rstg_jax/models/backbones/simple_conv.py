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

  Attributes:
    width: filters of every conv (512 in the paper).
    num_stages: conv/pool stages (3 in the paper).
    input_scale: factor applied to the pixels (1.0 in the paper).
    dtype: compute dtype; parameters stay float32.
  """

  width: int = 512
  num_stages: int = 3
  input_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video: jnp.ndarray) -> jnp.ndarray:
    """Maps a video [B, T, H, W, C] (0-255) to a feature map [B, T, H', W', width]."""
    if video.ndim != 5:
      raise ValueError(
          f"SimpleConv expects a video [B, T, H, W, C]; got shape {video.shape}")
    b, t = video.shape[:2]
    # Frames are independent: fold time into the batch.
    x = video.reshape((b * t,) + video.shape[2:]).astype(self.dtype)
    if self.input_scale != 1.0:
      x = x * jnp.asarray(self.input_scale, self.dtype)
    for i in range(self.num_stages):
      x = nn.Conv(self.width, (3, 3), padding="VALID", use_bias=True,
                  dtype=self.dtype, name=f"conv{i + 1}")(x)
      x = nn.relu(x)
      x = max_pool_2x2(x)
    return x.reshape((b, t) + x.shape[1:])
