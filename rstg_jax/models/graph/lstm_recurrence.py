"""The LSTM recurrence over a whole sequence with a hand-written backward pass.

Why hand-written (a measured speed-up, experiments/bench_graph.py --ab=lstm_vjp): JAX's
derivative of a scan adds each step's recurrent-weight gradient h_{t-1}^T dpre_t inside
the backward loop, a [4D, rows] x [rows, D] matmul per step with rows = B N = 112 at the
paper shape, which the CPU runs at about half of its large-matmul rate. Here the backward
loop only carries dh and dc and stores each step's gate gradients dpre_t; the weight
and bias gradients are then one matmul over all steps, [4D, T rows] x [T rows, D].
The forward step (`step`) is the one `time_stage.LSTMCell.recur` runs (gates i, f, g, o;
zero state).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from rstg_jax.models.graph import precision


def step(w_h, b_h, dtype, carry, x_proj):
  """One LSTM step, the equations of every RSTG LSTM (`time_stage.LSTMCell.recur` runs
  this too): carry (c, h) [..., D], projected inputs x_proj [..., 4D] -> carry,
  (h, c, the gate activations i, f, g, o [..., 4D])."""
  c, h = carry
  pre = x_proj + precision.matmul(h, w_h, dtype) + b_h.astype(
      precision.activation_dtype(dtype))
  i, f, g, o = jnp.split(pre, 4, axis=-1)
  i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
  c = f * c + i * g
  h = o * jnp.tanh(c)
  return (c, h), (h, c, jnp.concatenate([i, f, g, o], axis=-1))


def _run(w_h, b_h, x_proj, dtype, unroll):
  """x_proj [T, M, 4D] -> (hs, cs, gates), [T, M, D] / [T, M, 4D], from the zero state."""
  d = w_h.shape[0]
  zero = jnp.zeros(x_proj.shape[1:-1] + (d,), x_proj.dtype)
  _, out = jax.lax.scan(functools.partial(step, w_h, b_h, dtype), (zero, zero), x_proj,
                        unroll=unroll)
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def recurrence(w_h: jax.Array, b_h: jax.Array, x_proj: jax.Array, dtype: Any = jnp.float32,
               unroll: int = 1) -> jax.Array:
  """hs [T, M, D] of the LSTM with recurrent kernel w_h [D, 4D], bias b_h [4D] and
  projected inputs x_proj [T, M, 4D] (time first, M independent sequences)."""
  return _run(w_h, b_h, x_proj, dtype, unroll)[0]


def _fwd(w_h, b_h, x_proj, dtype, unroll):
  hs, cs, gates = _run(w_h, b_h, x_proj, dtype, unroll)
  return hs, (w_h, hs, cs, gates)


def _bwd(dtype, unroll, res, dhs):
  w_h, hs, cs, gates = res
  c_prev = jnp.concatenate([jnp.zeros_like(cs[:1]), cs[:-1]])

  def step(carry, xs):
    dh_next, dc_next = carry
    dh_out, c, cp, gate = xs
    i, f, g, o = jnp.split(gate, 4, axis=-1)
    tc = jnp.tanh(c)
    dh = dh_out + dh_next
    dc = dc_next + dh * o * (1 - tc * tc)
    dpre = jnp.concatenate([dc * g * i * (1 - i), dc * cp * f * (1 - f),
                            dc * i * (1 - g * g), dh * tc * o * (1 - o)], axis=-1)
    dh_prev = precision.matmul(dpre, w_h.T, dtype).astype(dh.dtype)
    return (dh_prev, dc * f), dpre

  zero = jnp.zeros_like(hs[0])
  _, dpres = jax.lax.scan(step, (zero, zero), (dhs, cs, c_prev, gates), reverse=True,
                          unroll=unroll)
  # h_{-1} = 0: the first step adds nothing to the recurrent-weight gradient.
  dw_h = precision.einsum("tmd,tmg->dg", hs[:-1], dpres[1:], dtype).astype(w_h.dtype)
  db_h = jnp.sum(dpres, axis=(0, 1)).astype(w_h.dtype)
  return dw_h, db_h, dpres


recurrence.defvjp(_fwd, _bwd)
