"""Caffe2 blobs of facebookresearch/video-nonlocal-net -> TF1 variable names (spec §11.6).

The original's TF layer names equal the Caffe2 blob prefixes, so a Kinetics pickle
becomes a dict of TF-named tensors in TF layout, which the TF mapping then consumes:
  - `{name}_w` conv weight [out, in, kT, kH, kW] -> `{root}/backbone/{name}/kernel`
    [kT, kH, kW, in, out]; `{name}_b` (non-local convs) -> `.../{name}/bias`;
  - `{bn}_s`, `{bn}_b`, `{bn}_rm`, `{bn}_riv` -> `{bn}/gamma`, `beta`, `moving_mean`,
    `moving_variance` (`_riv` is the running variance of SpatialBN);
  - `pred_w` [K, C] -> `{root}/pred/kernel` [1, 1, 1, C, K]; `pred_b` -> `pred/bias`.
Training state (`*_momentum`, learning rate, iteration counters) is skipped.
"""
from __future__ import annotations

import pickle
import re
from typing import Any

import numpy as np

_BN_SUFFIX = {"s": "gamma", "b": "beta", "rm": "moving_mean", "riv": "moving_variance"}
_SKIP = re.compile(r"(_momentum|^lr$|^iter$|^model_iter$|^lr_.*)")


def load_blobs(path: str) -> dict[str, Any]:
  """The blob dict of a video-nonlocal-net pickle (`{'blobs': {...}}` or flat)."""
  with open(path, "rb") as f:
    data = pickle.load(f, encoding="latin1")
  if isinstance(data, dict) and isinstance(data.get("blobs"), dict):
    data = data["blobs"]
  if not isinstance(data, dict):
    raise ValueError(f"{path}: not a Caffe2 pickle of blobs (got {type(data).__name__})")
  return data


def to_tf(blobs: dict[str, Any], root: str
          ) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
  """Converts blobs to TF-named arrays.

  Args:
    blobs: blob name -> array.
    root: 'tower/resnet_i3d' or 'tower/resnet_c2d'.

  Returns:
    (tensors: TF name -> array in TF layout, origin: TF name -> blob name,
     skipped: blob name -> reason).
  """
  tensors, origin, skipped = {}, {}, {}
  for name, value in blobs.items():
    if _SKIP.search(name):
      skipped[name] = "Caffe2 training state"
      continue
    if not isinstance(value, np.ndarray):
      skipped[name] = f"not an array ({type(value).__name__})"
      continue
    value = value.astype(np.float32)
    bn = re.fullmatch(r"(.*_bn)_(s|b|rm|riv)", name)
    if bn:
      tf_name = f"{root}/backbone/{bn.group(1)}/{_BN_SUFFIX[bn.group(2)]}"
    elif name in ("pred_w", "pred_b"):
      if name == "pred_w":
        # [K, C] (or [K, C, 1, 1, 1]) -> [1, 1, 1, C, K]
        value = value.reshape(value.shape[0], -1).T[None, None, None]
        tf_name = f"{root}/pred/kernel"
      else:
        tf_name = f"{root}/pred/bias"
    elif name.endswith("_w"):
      if value.ndim == 5:
        value = value.transpose(2, 3, 4, 1, 0)
      elif value.ndim == 4:  # a 2-D conv [out, in, kH, kW] stored without time
        value = value.transpose(2, 3, 1, 0)[None]
      tf_name = f"{root}/backbone/{name[:-2]}/kernel"
    elif name.endswith("_b"):
      tf_name = f"{root}/backbone/{name[:-2]}/bias"
    else:
      tf_name = f"{root}/backbone/{name}"
    tensors[tf_name] = np.ascontiguousarray(value)
    origin[tf_name] = name
  return tensors, origin, skipped
