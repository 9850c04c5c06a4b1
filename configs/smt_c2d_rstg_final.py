"""C2D ResNet-50 + RSTG-to-vec at `final` (config_smt_c2d_rstg_final).

`get_config("tiny")` is the same structure at tiny width, depth and clip size (CPU tests).
"""
from __future__ import annotations

from rstg_configs import smt_common


def get_config(arg: str | None = None):
  return smt_common.smt_config(arg, backbone="c2d", place_graph="final")
