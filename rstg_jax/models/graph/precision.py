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

import functools
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
    return jnp.matmul(x, w, preferred_element_type=activation_dtype(dtype))
  return x @ w


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
  return {"dtype": dtype, "dot_general": functools.partial(
      jax.lax.dot_general, preferred_element_type=activation_dtype(dtype))}


def dense(features: int, name: str, dtype: Any, **kwargs) -> nn.Dense:
  """A float32-parameter nn.Dense whose matmul takes `dtype` inputs (see `matmul`)."""
  return nn.Dense(features, param_dtype=jnp.float32, name=name, **dense_kwargs(dtype),
                  **kwargs)
