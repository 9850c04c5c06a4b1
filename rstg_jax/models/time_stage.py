"""The time processing stage of RSTG: LSTMs over each node's sequence (spec §6.1).

The original uses a single-layer cuDNN LSTM (standard gates, no peepholes, no forget-bias
offset, zero initial state, Glorot-uniform per-gate matrices). flax's
`OptimizedLSTMCell` computes the same equations with fused gate matmuls; its parameters
(`ii/if/ig/io` input kernels, `hi/hf/hg/ho` hidden kernels with the bias) map one-to-one
onto the TF-canonical kernel blocks (spec §11.4).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

LSTMState = tuple[jnp.ndarray, jnp.ndarray]  # (c, h), each [..., D]


def lstm_cell(features: int, name: str, dtype: Any = jnp.float32) -> nn.OptimizedLSTMCell:
  """A cell with the original's initialisation."""
  return nn.OptimizedLSTMCell(
      features,
      kernel_init=nn.initializers.glorot_uniform(),
      recurrent_kernel_init=nn.initializers.glorot_uniform(),
      bias_init=nn.initializers.zeros,
      dtype=dtype,
      param_dtype=jnp.float32,
      name=name)


def zero_state(batch_shape: tuple[int, ...], features: int,
               dtype: Any = jnp.float32) -> LSTMState:
  """The zero initial (c, h) every original LSTM pass starts from."""
  z = jnp.zeros(batch_shape + (features,), dtype)
  return (z, z)


def run_lstm(cell: nn.Module, xs: jnp.ndarray) -> jnp.ndarray:
  """Runs `cell` over time from a zero state: xs [B, T, ..., D] -> hs [B, T, ..., D].

  Every entry of the other axes (e.g. every node) is an independent sequence sharing
  the weights. A scan, so parameters are broadcast, not copied per step.
  """
  def body(c, carry, x):
    return c(carry, x)

  scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                 in_axes=1, out_axes=1)
  init = zero_state(xs.shape[:1] + xs.shape[2:-1], cell.features, xs.dtype)
  _, hs = scan(cell, init, xs)
  return hs
