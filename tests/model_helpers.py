"""Helpers of the model tests: abstract variables of a model for a clip, clip shapes,
parameter counts (configs load with `rstg_configs.common.get_config`)."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np


def clip_shape(config: Mapping[str, Any], batch: int = 1) -> tuple[int, ...]:
  """[batch, frames, size, size, 3] of a Something-Something config's clips."""
  ds = config["data"]
  return (batch, ds["num_frames"], ds["image_size"], ds["image_size"], 3)


def abstract_variables(model, shape) -> Any:
  """`model.init` for a float32 video of `shape`, as ShapeDtypeStructs (no memory)."""
  video = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), video)


def count(tree: Any) -> int:
  """Number of parameters (array elements) in a tree."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
