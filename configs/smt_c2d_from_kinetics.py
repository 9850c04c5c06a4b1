"""Something-Something C2D (174 classes) for the released Kinetics C2D checkpoint.

The original's config_kinetics_c2d: despite its name it declares Something-Something's
174 classes; it is the backbone-only model that a Kinetics-pretrained checkpoint (TF1 or
Caffe2) initialises, the 400-class `pred` re-initialised. Same model as smt_c2d.py.

`get_config("tiny")` is the same structure at tiny width, depth and clip size (CPU tests).
"""
from __future__ import annotations

from rstg_configs import smt_common


def get_config(arg: str | None = None):
  return smt_common.smt_config(arg, backbone="c2d")
