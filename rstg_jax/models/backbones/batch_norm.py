"""Backbone BatchNorm in the original's frozen-statistics mode or in normal training mode.

The original trains its Kinetics-initialised backbones with every BatchNorm in inference
mode (`is_training=False` even while training, spec §8, §14.9): the running mean and
variance never change, yet gamma and beta are trainable. Flax's `nn.BatchNorm` with
`use_running_average=True` is exactly that: it normalises with the `batch_stats`
collection, never writes it, and keeps `scale`/`bias` in `params`. So no custom layer is
needed, only the choice of `use_running_average` per mode.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

BN_MODES = ("frozen", "train")

# tf.layers.batch_normalization(momentum=0.9, epsilon=1e-5) in the backbone (spec §8);
# Flax's momentum has the same meaning (running = momentum * running + (1 - m) * batch).
BACKBONE_BN_MOMENTUM = 0.9
BACKBONE_BN_EPSILON = 1e-5


def backbone_norm(bn_mode: str, train: bool, dtype: Any = jnp.float32
                  ) -> Callable[..., nn.BatchNorm]:
  """Returns a BatchNorm factory for backbone layers.

  Args:
    bn_mode: 'frozen' (the original: running statistics always used and never
      updated, scale/bias trainable) or 'train' (batch statistics in training,
      running averages updated; running averages at evaluation).
    train: whether the surrounding call is a training step.
    dtype: compute dtype of the normalised output (parameters stay float32).

  Returns:
    `functools.partial(nn.BatchNorm, ...)`; call it with `name=` and optionally
    `scale_init=`.
  """
  if bn_mode not in BN_MODES:
    raise ValueError(f"bn_mode={bn_mode!r}: must be one of {BN_MODES}")
  use_running_average = True if bn_mode == "frozen" else not train
  return functools.partial(
      nn.BatchNorm,
      use_running_average=use_running_average,
      momentum=BACKBONE_BN_MOMENTUM,
      epsilon=BACKBONE_BN_EPSILON,
      dtype=dtype,
      param_dtype=jnp.float32)
