"""Mixed precision of the graph: bfloat16 matmul inputs, float32 everything else.

Under a bfloat16 model `dtype` the graph does not run wholly in bfloat16. Only the
matmuls of the parts named in `GraphConfig.bf16_parts` take bfloat16 inputs, and they
accumulate and return float32 (`preferred_element_type`). Parameters, node states, LSTM
states and gates, norm statistics, softmax and every elementwise op stay float32, the
'activation dtype' below. Measured why (experiments/graph_grad_error.py --study): the
dot-attention logits are unscaled sums over D = 512 (magnitude ~20 at initialisation),
so a 2^-9 rounding of the node states or of the query/key projections moves them by
~0.1 and the near-hard softmax with them. Under float32 or float64 `dtype` nothing here
changes the computation.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def activation_dtype(dtype: Any) -> Any:
  """The dtype of states and elementwise work: float32 under bfloat16 compute, else `dtype`."""
  return jnp.promote_types(dtype, jnp.float32)


def is_low(dtype: Any) -> bool:
  """True for a compute dtype narrower than float32 (bfloat16, float16)."""
  return jnp.dtype(dtype) != activation_dtype(dtype)


def part_dtype(parts: tuple[str, ...], part: str, dtype: Any) -> Any:
  """The matmul input dtype of `part`: `dtype` if the part is in `parts`, else float32."""
  return dtype if part in parts else activation_dtype(dtype)


def matmul(x: jax.Array, w: jax.Array, dtype: Any) -> jax.Array:
  """x @ w with inputs cast to `dtype`; a low-precision `dtype` accumulates in float32."""
  x, w = x.astype(dtype), w.astype(dtype)
  if is_low(dtype):
    if w.ndim == 2:
      return low_matmul(x, w)
    return jnp.matmul(x, w, preferred_element_type=activation_dtype(dtype))
  return x @ w


@jax.custom_vjp
def low_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., K] @ w [K, N] of low-precision inputs, accumulated and returned in float32.

  Hand-written backward pass for speed (measured, experiments/graph_grad_error.py
  --study): JAX's transpose of this dot contracts the rows of x and of the float32
  cotangent, a form XLA:CPU runs as a float32 Eigen dot after upcasting x (~100
  GFLOP/s on an AMX CPU, against ~350-550 for bf16 in its YNNPACK form). Here both
  gradients are low-precision matmuls in the form that takes the fast path: the
  cotangent is rounded to x's dtype, as in the usual mixed-precision backward pass.
  Being a custom_vjp, it supports reverse-mode differentiation only (no jax.jvp).
  """
  return jnp.matmul(x, w, preferred_element_type=jnp.float32)


def _low_matmul_fwd(x, w):
  return low_matmul(x, w), (x, w)


def _low_matmul_bwd(res, dy):
  x, w = res
  k, n = w.shape
  dy = dy.astype(x.dtype)
  dx = jnp.matmul(dy, w.T, preferred_element_type=jnp.float32).astype(x.dtype)
  # One contraction over a [1, rows] pair of axes, not over a flat row axis: the
  # form XLA:CPU hands to YNNPACK (a flat one falls back to an upcast Eigen dot).
  dw = jnp.einsum("cri,cro->io", x.reshape(1, -1, k), dy.reshape(1, -1, n),
                  preferred_element_type=jnp.float32).astype(w.dtype)
  return dx, dw


low_matmul.defvjp(_low_matmul_fwd, _low_matmul_bwd)


def _low_dot_general(lhs, rhs, dimension_numbers, precision=None,
                     preferred_element_type=None):
  """nn.Dense's dot_general for low-precision inputs: `low_matmul` for its
  [..., K] x [K, N] contraction, else lax.dot_general; both accumulate in float32."""
  (lc, rc), (lb, rb) = dimension_numbers
  if (rhs.ndim == 2 and tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,)
      and not lb and not rb):
    return low_matmul(lhs, rhs)
  return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                             preferred_element_type=preferred_element_type or jnp.float32)


def einsum(spec: str, a: jax.Array, b: jax.Array, dtype: Any) -> jax.Array:
  """jnp.einsum of two operands cast to `dtype`, accumulating as `matmul`."""
  a, b = a.astype(dtype), b.astype(dtype)
  if is_low(dtype):
    return jnp.einsum(spec, a, b, preferred_element_type=activation_dtype(dtype))
  return jnp.einsum(spec, a, b)


def dense_kwargs(dtype: Any) -> dict:
  """nn.Dense arguments for matmul inputs in `dtype`, float32 output under low precision."""
  if not is_low(dtype):
    return {"dtype": dtype}
  return {"dtype": dtype, "dot_general": _low_dot_general}


def dense(features: int, name: str, dtype: Any, **kwargs) -> nn.Dense:
  """A float32-parameter nn.Dense whose matmul takes `dtype` inputs (see `matmul`)."""
  return nn.Dense(features, param_dtype=jnp.float32, name=name, **dense_kwargs(dtype),
                  **kwargs)
