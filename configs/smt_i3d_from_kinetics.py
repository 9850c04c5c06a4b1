"""The Kinetics-pretrained I3D backbone's config (config_kinetics_i3d).

As released, it declares Something-Something's 174 classes: it is the backbone-only
model that a Kinetics checkpoint initialises (the 400-class `pred` is re-initialised).

`get_config("tiny")` is the same structure at tiny width, depth and clip size (CPU tests).
"""
from __future__ import annotations

from rstg_configs import smt_common


def get_config(arg: str | None = None):
  return smt_common.smt_config(arg, backbone="i3d")
