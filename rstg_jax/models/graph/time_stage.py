"""The time processing stage of RSTG: LSTMs over each node's sequence (spec §6.1).

The original uses a single-layer cuDNN LSTM (standard gates i, f, g, o, no peepholes, no
forget-bias offset, zero initial state, Glorot-uniform per-gate matrices). `LSTMCell`
computes those equations with the parameter tree of flax's `OptimizedLSTMCell`
(`ii/if/ig/io` input kernels, `hi/hf/hg/ho` hidden kernels with the bias), which maps
one-to-one onto the TF-canonical kernel blocks (spec §11.4). It is hand-written only to
split the input projection from the recurrence: over a whole sequence (the K-pass
schedule) x W_x becomes one large matmul outside the scan instead of T small ones.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from rstg_jax.models.graph import lstm_recurrence
from rstg_jax.models.graph import precision

LSTMState = tuple[jnp.ndarray, jnp.ndarray]  # (c, h), each [..., D]
GATES = ("i", "f", "g", "o")


def _gate_init(bias: bool):
  def init(key, shape):
    p = {"kernel": nn.initializers.glorot_uniform()(key, shape, jnp.float32)}
    if bias:
      p["bias"] = jnp.zeros(shape[1:], jnp.float32)
    return p
  return init


class LSTMCell(nn.Module):
  """LSTM cell; carry (c, h) [..., D], input [..., D_in] -> (carry, h).

  `dtype` is the matmul inputs' dtype; under bfloat16 the matmuls accumulate in float32
  and the gates and the carry stay float32 (rstg_jax/models/graph/precision.py).
  """
  features: int
  in_features: int
  dtype: Any = jnp.float32

  def setup(self):
    shape_x, shape_h = (self.in_features, self.features), (self.features, self.features)
    inputs = [self.param("i" + g, _gate_init(False), shape_x) for g in GATES]
    hidden = [self.param("h" + g, _gate_init(True), shape_h) for g in GATES]
    # One [.., 4D] matmul per side instead of four.
    self.w_x = jnp.concatenate([p["kernel"] for p in inputs], axis=-1)
    self.w_h = jnp.concatenate([p["kernel"] for p in hidden], axis=-1)
    self.b_h = jnp.concatenate([p["bias"] for p in hidden])

  def project_inputs(self, x: jnp.ndarray) -> jnp.ndarray:
    """x [..., D_in] -> the four gates' input pre-activations [..., 4D]."""
    return precision.matmul(x, self.w_x, self.dtype)

  def recur(self, carry: LSTMState, x_proj: jnp.ndarray) -> tuple[LSTMState, jnp.ndarray]:
    """One step from already projected inputs [..., 4D]."""
    carry, (h, _, _) = lstm_recurrence.step(self.w_h, self.b_h, self.dtype, carry, x_proj)
    return carry, h

  def __call__(self, carry: LSTMState, x: jnp.ndarray) -> tuple[LSTMState, jnp.ndarray]:
    return self.recur(carry, self.project_inputs(x))


def lstm_cell(features: int, name: str, dtype: Any = jnp.float32) -> LSTMCell:
  """A cell whose input width equals its units, as every RSTG LSTM (spec §4)."""
  return LSTMCell(features, features, dtype=dtype, name=name)


def zero_state(batch_shape: tuple[int, ...], features: int,
               dtype: Any = jnp.float32) -> LSTMState:
  """The zero initial (c, h) every original LSTM pass starts from."""
  z = jnp.zeros(batch_shape + (features,), dtype)
  return (z, z)


def run_lstm(cell: LSTMCell, xs: jnp.ndarray, unroll: int = 1,
             remat: bool = False, hand_vjp: bool = False) -> jnp.ndarray:
  """Runs `cell` over time from a zero state: xs [B, T, ..., D] -> hs [B, T, ..., D].

  Every entry of the other axes (e.g. every node) is an independent sequence sharing
  the weights. The input projection runs once for all steps; the scan carries only the
  recurrence, with the parameters broadcast. With `remat` each step's gates are
  recomputed in the backward pass: only the (c, h) carries are stored per step.
  With `hand_vjp` (and no remat) the recurrence takes the backward pass of
  `lstm_recurrence`, whose recurrent-weight gradient is one matmul over all steps.
  """
  if hand_vjp and not remat:
    x_proj = jnp.moveaxis(cell.project_inputs(xs), 1, 0)  # [T, B, ..., 4D]
    hs = lstm_recurrence.recurrence(cell.w_h, cell.b_h,
                                    x_proj.reshape(x_proj.shape[0], -1, x_proj.shape[-1]),
                                    cell.dtype, unroll)
    return jnp.moveaxis(hs.reshape(x_proj.shape[:-1] + hs.shape[-1:]), 0, 1)

  def body(c, carry, x_proj):
    return c.recur(carry, x_proj)

  if remat:
    body = nn.remat(body)
  scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                 in_axes=1, out_axes=1, unroll=unroll)
  init = zero_state(xs.shape[:1] + xs.shape[2:-1], cell.features,
                    precision.activation_dtype(xs.dtype))
  _, hs = scan(cell, init, cell.project_inputs(xs))
  return hs
