"""The down-sampling of the original SyncMNIST: SciPy 1.2's `scipy.misc.imresize`.

`imresize` was removed from SciPy (1.3), so its default path is reproduced in
the same two steps (spec §10.1 step 7):

1. `bytescale`: the float frame is mapped linearly so that its minimum becomes 0
   and its maximum 255, then rounded half-up to uint8. For SyncMNIST the
   background is 0 and MNIST digits reach 255, so this is (almost) the identity,
   but a frame whose brightest pixel is < 255 does get stretched, as in the
   original.
2. Pillow's BILINEAR resize of the 8-bit image. Pillow antialiases when it
   down-scales (the triangle kernel is stretched by the scale factor, 100/64
   here), so this is not a plain 4-neighbour interpolation.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def bytescale(frame: np.ndarray) -> np.ndarray:
  """`scipy.misc.bytescale(frame)` with its defaults (low=0, high=255) for a float frame.

  Integer input is treated as the float frame with the same values (the
  original canvas was float), not passed through as scipy did for uint8.

  Args:
    frame: float or integer array [H, W] (values in 0..255 for SyncMNIST).

  Returns:
    uint8 [H, W].
  """
  cmin, cmax = frame.min(), frame.max()
  if np.issubdtype(frame.dtype, np.integer) and cmin == 0 and cmax == 255:
    # The float formula is exactly the identity here; skip it (it is most of the
    # cost of rendering a video).
    return frame.astype(np.uint8, copy=False)
  cscale = float(cmax) - float(cmin)
  if cscale == 0:
    cscale = 1.0
  scaled = (np.asarray(frame, dtype=np.float64) - float(cmin)) * (255.0 / cscale)
  return (scaled.clip(0, 255) + 0.5).astype(np.uint8)


def imresize_bilinear(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """`scipy.misc.imresize(frame, size)` (interp='bilinear', mode=None).

  Args:
    frame: float or integer array [H, W].
    size: output (height, width).

  Returns:
    uint8 [height, width].
  """
  if frame.ndim != 2:
    raise ValueError(f"imresize_bilinear expects a 2-D frame, got shape {frame.shape}")
  image = Image.fromarray(bytescale(frame))  # 2-D uint8 -> mode "L"
  # Pillow sizes are (width, height).
  resized = image.resize((size[1], size[0]), resample=Image.Resampling.BILINEAR)
  return np.asarray(resized, dtype=np.uint8)

