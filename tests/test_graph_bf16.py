"""The graph's bfloat16 form (GraphConfig.bf16_parts under a bfloat16 model dtype).

Only the matmuls of the chosen parts take bfloat16 inputs, accumulating in float32;
parameters, node and LSTM states, norms and softmax stay float32. The gradient bound is
taken without norms (use_norm='none'): the graph's LayerNorms amplify any 2^-9 input
perturbation ~20-fold even in exact arithmetic, which would hide the form's own error
(experiments/graph_grad_error.py --study). The old all-bfloat16 form (states, carries and
matmul outputs in bfloat16, commit fede4d0) gave worst-leaf errors 0.30 (dot) and 0.37
(simple) here and fails the bound; the mixed default gives 0.05 and 0.07, `all` 0.11.
"""
import dataclasses
import statistics

import jax
from jax.extend import core as jex_core
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.graph import precision
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph

D = 64
SHAPE = (2, 3, 14, D)  # [B, T, N, D]


def grads(cfg, params, nodes, dtype):
  graph = RSTGGraph(cfg, dtype=dtype)

  def loss(p, x):
    return jnp.mean(jnp.square(graph.apply({"params": p}, x).astype(jnp.float32)))

  return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, nodes)


def leaf_errors(got, want):
  """Per leaf: max |g - g64| / max |g64| (as experiments/graph_grad_error.py)."""
  return [float(np.max(np.abs(np.asarray(g, np.float64) - w)) / np.max(np.abs(w)))
          for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want))]


@pytest.mark.parametrize("att,parts", [("dot", "messages"), ("simple", "messages"),
                                       ("dot", "all")])
def test_bf16_gradients_near_float64(att, parts):
  extra = {} if att == "dot" else dict(scalewise_update=False, use_positional_emb=True)
  cfg = GraphConfig(node_feat_dim=D, message_dims=D, use_norm="none", use_att=att,
                    bf16_parts=parts, **extra)
  nodes = jax.random.normal(jax.random.key(0), SHAPE)
  params = RSTGGraph(cfg).init(jax.random.key(1), nodes)["params"]
  with jax.enable_x64(True):
    want = jax.tree.map(np.asarray, grads(
        cfg, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params),
        jnp.asarray(nodes, jnp.float64), jnp.float64))
  errs = leaf_errors(grads(cfg, params, nodes, jnp.bfloat16), want)
  assert max(errs) < 0.2 and statistics.median(errs) < 0.03, (max(errs), errs)


def _dot_input_dtypes(cfg, dtype):
  nodes = jnp.zeros(SHAPE)
  graph = RSTGGraph(cfg, dtype=dtype)
  params = graph.init(jax.random.key(0), nodes)["params"]
  jaxpr = jax.make_jaxpr(lambda p: graph.apply({"params": p}, nodes))(params)
  found = []

  def walk(jp):
    for eqn in jp.eqns:
      if eqn.primitive.name == "dot_general":
        found.append((eqn.invars[0].aval.dtype, eqn.outvars[0].aval.dtype))
      for sub in jex_core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jaxpr.jaxpr)
  return found, graph.apply({"params": params}, nodes)


def test_bf16_parts_choose_the_bfloat16_matmuls():
  cfg = GraphConfig(node_feat_dim=D, message_dims=D)
  dots, out = _dot_input_dtypes(cfg, jnp.bfloat16)
  assert out.dtype == jnp.float32
  # Every matmul returns float32; the default takes only the message layers to bf16.
  assert all(o == jnp.float32 for _, o in dots)
  n_bf16 = sum(i == jnp.bfloat16 for i, _ in dots)
  # Per space stage (traced once per iteration): 2 (PairDense) + 1 (send_conv2).
  assert n_bf16 == 3 * cfg.num_process_iter, dots
  all_dots, _ = _dot_input_dtypes(dataclasses.replace(cfg, bf16_parts="all"), jnp.bfloat16)
  assert all(i == jnp.bfloat16 for i, _ in all_dots)
  none_dots, _ = _dot_input_dtypes(dataclasses.replace(cfg, bf16_parts="none"),
                                   jnp.bfloat16)
  assert all(i == jnp.float32 for i, _ in none_dots)


def test_bf16_parts_do_not_touch_float32():
  cfg = GraphConfig(node_feat_dim=D, message_dims=D)
  nodes = jax.random.normal(jax.random.key(0), SHAPE)
  params = RSTGGraph(cfg).init(jax.random.key(1), nodes)["params"]
  outs = [RSTGGraph(dataclasses.replace(cfg, bf16_parts=p)).apply({"params": params}, nodes)
          for p in ("all", "none")]
  np.testing.assert_array_equal(outs[0], outs[1])


def test_bf16_parts_validated():
  with pytest.raises(ValueError, match="bf16_parts"):
    GraphConfig(bf16_parts="messages-softmax")
  assert GraphConfig(bf16_parts="none").bf16_part_set == ()


def _bf16_as_f64(a):
  # Round to bf16 in JAX, widen in NumPy: JAX without x64 would make float64 float32.
  return np.asarray(jnp.asarray(a).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


def test_low_matmul_backward_is_the_mixed_precision_one():
  # The hand-written backward pass of the bf16 matmuls: both gradients are products of
  # bf16 operands (the float32 cotangent rounded to bf16) accumulated in float32.
  # Reference: the same products in float64 on the same rounded operands.
  kx, kw, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (3, 5, 48)).astype(jnp.bfloat16)
  w = jax.random.normal(kw, (48, 40)).astype(jnp.bfloat16)
  dy = jax.random.normal(kg, (3, 5, 40))
  y, vjp = jax.vjp(precision.low_matmul, x, w)
  dx, dw = vjp(dy)
  assert y.dtype == jnp.float32 and dx.dtype == x.dtype and dw.dtype == w.dtype
  x64, w64, dy64 = _bf16_as_f64(x), _bf16_as_f64(w), _bf16_as_f64(dy)
  np.testing.assert_allclose(y, x64 @ w64, rtol=1e-5, atol=1e-5)
  # The gradients come back in the operands' dtype, bf16: equal up to its rounding.
  np.testing.assert_allclose(np.asarray(dx, np.float64), dy64 @ w64.T, rtol=2 ** -8, atol=1e-6)
  np.testing.assert_allclose(np.asarray(dw, np.float64),
                             np.einsum("bri,bro->io", x64, dy64), rtol=2 ** -8, atol=1e-6)


def test_dense_takes_the_low_matmul_only_for_its_own_contraction():
  x = jax.random.normal(jax.random.key(0), (2, 7, 16)).astype(jnp.bfloat16)
  w = jax.random.normal(jax.random.key(1), (16, 8)).astype(jnp.bfloat16)
  dense_dims = (((2,), (0,)), ((), ()))
  np.testing.assert_array_equal(
      precision._low_dot_general(x, w, dense_dims),
      jax.lax.dot_general(x, w, dense_dims, preferred_element_type=jnp.float32))
  # Any other contraction (here batched) falls through to lax.dot_general.
  b = jax.random.normal(jax.random.key(2), (2, 16, 5)).astype(jnp.bfloat16)
  batched = (((2,), (1,)), ((0,), (0,)))
  got = precision._low_dot_general(x, b, batched, preferred_element_type=jnp.float32)
  np.testing.assert_array_equal(
      got, jax.lax.dot_general(x, b, batched, preferred_element_type=jnp.float32))
  # As nn.Dense calls it (no preferred type): still float32 accumulation and output.
  assert precision._low_dot_general(x, b, batched).dtype == jnp.float32
  jaxpr = str(jax.make_jaxpr(lambda a, k: precision._low_dot_general(a, k, dense_dims))(x, w))
  assert "custom_vjp_call" in jaxpr
