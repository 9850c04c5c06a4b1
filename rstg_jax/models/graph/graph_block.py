"""An RSTG graph placed on a backbone feature map: pooling, graph, read-out, residual norm.

This is what backbones insert: at `final` with readout='vec' (RSTG-to-vec), inside a
stage with readout='map' (RSTG-to-map). It returns only the graph branch; the caller
combines it (`serial`: replace the backbone output; `plus`: add).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from rstg_jax.models.graph import area_resize, readouts
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph

READOUTS = ("vec", "map")


class RSTGBlock(nn.Module):
  """Backbone map [B, T, H, W, C] -> graph branch [B, C] ('vec') or [B, T, H, W, C] ('map').

  Attributes:
    graph: the graph settings.
    readout: 'vec' (mean over time, sum over nodes) or 'map' (area up-sampling per scale).
    project: C <-> D projections around the graph (needed when C != node_feat_dim).
      With `graph.node_pooling='moments'` the nodes are 3C wide, so the block always
      projects (3C -> D -> C).
    residual_norm: 'LN', 'BN' or 'none'; LN and BN make the branch exactly zero at
      initialisation, so a backbone with the block inserted starts as the backbone.
    dtype: compute dtype (parameters stay float32).
  """
  graph: GraphConfig
  readout: str = "vec"
  project: bool = False
  residual_norm: str = "none"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    if self.readout not in READOUTS:
      raise ValueError(f"RSTGBlock.readout={self.readout!r}: must be one of {READOUTS}")
    if x.ndim != 5:
      raise ValueError(f"RSTGBlock expects a feature map [B, T, H, W, C], got {x.shape}")
    cfg = self.graph
    moments = cfg.node_pooling == "moments"
    nodes = area_resize.pool_to_nodes(x, cfg.scales, moments)  # [B, T, N, C or 3C]
    out = RSTGGraph(cfg, project=self.project or moments, out_channels=x.shape[-1],
                    dtype=self.dtype, name="graph")(nodes, train=train)
    if self.readout == "vec":
      y, axes = readouts.to_vec(out), 1
    else:
      y = readouts.to_map(out, cfg.scales, x.shape[2], x.shape[3])
      # The original's map LN spans the whole clip (T, H, W, C); per_frame: (H, W, C).
      axes = 4 if cfg.norm_scope == "clip" else 3
    return readouts.ResidualNorm(self.residual_norm, num_axes=axes, dtype=self.dtype,
                                 name="residual")(y, train=train)
