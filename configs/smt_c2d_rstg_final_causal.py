"""C2D ResNet-50 + RSTG-to-vec at `final`, causal: the graph normalises each frame on
its own (graph.norm_scope='per_frame') instead of the original's whole-clip
LayerNorm, so the trained model streams (`python -m rstg_jax.predict --stream`).
Otherwise configs/smt_c2d_rstg_final.py (the paper's model). C2D has no temporal
kernels, so only the graph had to change.

`get_config("tiny")` is the same structure at tiny width, depth and clip size (CPU tests).
"""
from __future__ import annotations

from rstg_configs import smt_common


def get_config(arg: str | None = None):
  c = smt_common.smt_config(arg, backbone="c2d", place_graph="final")
  c.model.graph.norm_scope = "per_frame"
  return c
