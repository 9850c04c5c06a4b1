"""The original's "differentiable resize area" as closed-form matrices (spec §3.1).

TF1's `resize_area(align_corners=False)` is a separable linear map: output cell o of a
1-D resize n_in -> n_out covers [o*S, (o+1)*S) with S = n_in / n_out, and input pixel i
gets the length of [i, i+1) inside that interval, divided by S. The same formula serves
down-sampling (map -> nodes) and up-sampling (nodes -> map). It is *not* adaptive average
pooling when the sizes do not divide: boundary pixels are split fractionally.
"""
from __future__ import annotations

import functools
from fractions import Fraction

import jax.numpy as jnp
import numpy as np

from rstg_jax.models.graph import graph_layout


@functools.lru_cache(maxsize=None)
def area_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Weights [n_out, n_in] of a 1-D area resize; every row sums to 1.

  Exact rational arithmetic, so 14->3 gives exactly 3/14 and 2/14, etc.
  """
  if n_in < 1 or n_out < 1:
    raise ValueError(f"area resize needs positive sizes, got {n_in} -> {n_out}")
  scale = Fraction(n_in, n_out)
  w = np.zeros((n_out, n_in), np.float64)
  for o in range(n_out):
    lo, hi = o * scale, (o + 1) * scale
    for i in range(int(lo), min(n_in, int(np.ceil(float(hi))))):
      overlap = min(hi, i + 1) - max(lo, i)
      if overlap > 0:
        w[o, i] = float(overlap / scale)
  w.setflags(write=False)
  return w


@functools.lru_cache(maxsize=None)
def area_moment_matrix(n_in: int, n_out: int) -> np.ndarray:
  """`area_resize_matrix` weighted by where each input pixel lies in its output cell.

  Entry [o, i] is w[o, i] * u, with u = 2 (c_i - o S) / S - 1 the position of pixel
  i's centre c_i = i + 1/2 in cell o ([o S, (o+1) S), S = n_in / n_out) on a -1..1
  scale. Not in the original: the first moment for `pool_to_nodes(moments=True)`.
  """
  w = area_resize_matrix(n_in, n_out)
  scale = n_in / n_out
  centres = np.arange(n_in) + 0.5
  u = 2.0 * (centres[None, :] - np.arange(n_out)[:, None] * scale) / scale - 1.0
  m = w * u
  m.setflags(write=False)
  return m


def _separable(rows: np.ndarray, cols: np.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """rows [h, H], cols [w, W] applied to [..., H, W, C] -> [..., h, w, C]."""
  return jnp.einsum("ai,bj,...ijc->...abc", jnp.asarray(rows, x.dtype),
                    jnp.asarray(cols, x.dtype), x)


def area_resize(x: jnp.ndarray, out_h: int, out_w: int) -> jnp.ndarray:
  """Area-resizes the two axes before the channels: [..., H, W, C] -> [..., h, w, C]."""
  return _separable(area_resize_matrix(x.shape[-3], out_h),
                    area_resize_matrix(x.shape[-2], out_w), x)


def pool_to_nodes(x: jnp.ndarray, scales: tuple[int, ...],
                  moments: bool = False) -> jnp.ndarray:
  """Node features from a feature map (spec §3.2): [..., H, W, C] -> [..., N, C].

  Each scale s gives s*s row-major cells; scales are concatenated in the given order.
  With `moments` (not in the original) each node also gets the area means of the map
  weighted by the row and by the column position inside the node's region (-1..1):
  [..., N, 3C] = (mean, row moment, column moment). Plain area means are nearly blind
  to where something sits inside a region, so a move that stays inside one node is
  hardly visible to the graph (experiments/syncmnist/node_probe.py).
  """
  h, w = x.shape[-3], x.shape[-2]
  nodes = []
  for s in scales:
    rows, cols = area_resize_matrix(h, s), area_resize_matrix(w, s)
    cells = _separable(rows, cols, x)
    if moments:
      cells = jnp.concatenate([
          cells,
          _separable(area_moment_matrix(h, s), cols, x),
          _separable(rows, area_moment_matrix(w, s), x)], axis=-1)
    nodes.append(cells.reshape(cells.shape[:-3] + (s * s, cells.shape[-1])))
  return jnp.concatenate(nodes, axis=-2)


def nodes_to_map(nodes: jnp.ndarray, scales: tuple[int, ...], height: int,
                 width: int) -> jnp.ndarray:
  """RSTG-to-map (spec §7.3): [..., N, C] -> [..., H, W, C].

  Each scale's nodes are area-up-sampled to H x W and the scales are summed.
  """
  out = 0.0
  for s, sl in zip(scales, graph_layout.scale_slices(scales)):
    cells = nodes[..., sl, :]
    cells = cells.reshape(cells.shape[:-2] + (s, s, cells.shape[-1]))
    out = out + area_resize(cells, height, width)
  return out
