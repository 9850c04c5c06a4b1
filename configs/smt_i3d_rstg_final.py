"""I3D ResNet-50 + RSTG-to-vec at `final` (config_smt_i3d_rstg_final).

`get_config("tiny")` is the same structure at tiny width, depth and clip size (CPU tests).
"""
from __future__ import annotations

from rstg_configs import smt_common


def get_config(arg: str | None = None):
  return smt_common.smt_config(arg, backbone="i3d", place_graph="final")
