"""The fixed multi-scale node layout of RSTG: regions, adjacency and positional maps.

Everything here is computed from the rules of spec §2-§3.3 (nothing is typed in), in the
node order used throughout the package: scales in decreasing order (3x3, 2x2, 1x1 for
`num_scales=3`), cells row-major within a scale.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np


class Box(NamedTuple):
  """A closed region in input-image pixels: columns [x0, x1], rows [y0, y1]."""
  x0: int
  x1: int
  y0: int
  y1: int


def scales_for(num_scales: int) -> tuple[int, ...]:
  """Grid sides in node order, e.g. 3 -> (3, 2, 1)."""
  if num_scales < 1:
    raise ValueError(f"num_scales must be >= 1, got {num_scales}")
  return tuple(range(num_scales, 0, -1))


def scale_slices(scales: tuple[int, ...]) -> list[slice]:
  """The node-axis slice of each scale, e.g. (3, 2, 1) -> [0:9, 9:13, 13:14]."""
  out, start = [], 0
  for s in scales:
    out.append(slice(start, start + s * s))
    start += s * s
  return out


def region_boxes(scales: tuple[int, ...], image_dim: int) -> list[Box]:
  """Region rectangles in pixel coordinates (spec §2.2), in node order.

  For a scale s the patch side is p = floor(dim / s) with stride p from 0; patches are
  generated while the far edge stays inside the image, so 224/3 leaves 2 px uncovered.
  """
  boxes = []
  for s in scales:
    p = image_dim // s
    starts = [k * p for k in range(s) if k * p + p <= image_dim]
    for y0 in starts:  # rows: outer loop (row-major)
      for x0 in starts:
        boxes.append(Box(x0, x0 + p, y0, y0 + p))
  return boxes


def boxes_connected(a: Box, b: Box) -> bool:
  """The original's overlap rule (spec §2.3): touching edges count, a lone corner not."""
  dx = min(a.x1, b.x1) - max(a.x0, b.x0)
  dy = min(a.y1, b.y1) - max(a.y0, b.y0)
  return dx >= 0 and dy >= 0 and not (dx == 0 and dy == 0)


@functools.lru_cache(maxsize=None)
def adjacency(num_scales: int = 3, image_dim: int = 224) -> np.ndarray:
  """Symmetric 0/1 adjacency [N, N] without self-loops (spec §2.3; 14x14 for 3 scales).

  The original pads a 15th "extra" node and slices it away again before use (§2.4), so
  it is not built here.
  """
  boxes = region_boxes(scales_for(num_scales), image_dim)
  n = len(boxes)
  a = np.zeros((n, n), np.float32)
  for i in range(n):
    for j in range(i):
      if boxes_connected(boxes[i], boxes[j]):
        a[i, j] = a[j, i] = 1.0
  a.setflags(write=False)
  return a


def gaussian_window(k: int, std: float = 2.0) -> np.ndarray:
  """Peak-normalised Gaussian window (what `scipy.signal.gaussian(k, std)` returned)."""
  n = np.arange(k, dtype=np.float64) - (k - 1) / 2.0
  return np.exp(-0.5 * (n / std) ** 2)


@functools.lru_cache(maxsize=None)
def positional_embedding(num_scales: int = 3, dim_map: int = 6) -> np.ndarray:
  """Gaussian positional maps [N, dim_map**2] (spec §3.3), flattened row-major.

  Node (r, c) of scale s writes G = g g^T (block side k = dim_map // s) at rows
  r*k.., cols c*k.. of an otherwise zero dim_map x dim_map map.
  """
  maps = []
  for s in scales_for(num_scales):
    k = dim_map // s
    g = gaussian_window(k)
    block = np.outer(g, g)
    for r in range(s):
      for c in range(s):
        m = np.zeros((dim_map, dim_map), np.float64)
        m[r * k:(r + 1) * k, c * k:(c + 1) * k] = block
        maps.append(m.reshape(-1))
  pe = np.stack(maps).astype(np.float32)
  pe.setflags(write=False)
  return pe
