"""The space stage's pair-tensor rewrites (GraphConfig.pair_rewrite) against the literal form.

The rewrite moves the message LayerNorm after the attention-weighted gather and computes
the gather as a multiply-sum; outputs and gradients must equal the literal form (LN on
every pair, then an einsum) up to float rounding. Compared in float64, where rounding is
~1e-15, so a wrong term shows; and the float32 rewrite against the float64 literal form.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph
from rstg_jax.models.graph.space_stage import GatherLayerNorm
import rstg_numpy_reference as ref

D = 8
SHAPE = (2, 3, 14, D)  # [B, T, N, D]


def cfg_of(**kw):
  return GraphConfig(node_feat_dim=D, message_dims=D, **kw)


def params_and_nodes(cfg, seed=0, frames=SHAPE[1]):
  nodes = jax.random.normal(jax.random.key(seed), (SHAPE[0], frames) + SHAPE[2:])
  params = jax.jit(RSTGGraph(cfg).init)(jax.random.key(seed + 1), nodes)["params"]
  # Non-zero biases and LN affines, so that a misplaced one shows.
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda p: p + 0.3 * rng.normal(size=p.shape).astype(np.float32),
                        params)
  return params, nodes


def value_and_grads(cfg, params, nodes, dtype):
  graph = RSTGGraph(cfg, dtype=dtype)

  def loss(p, x):
    return jnp.sum(jnp.sin(3.0 * graph.apply({"params": p}, x)))

  cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, dtype), t)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(cast(params), cast(nodes))


def max_rel_err(got, want, floor=1e-6):
  """Largest |got - want| of a leaf over that leaf's largest |want|, over all leaves.

  A leaf's scale is at least `floor` times the largest gradient anywhere: some gradients
  are exactly zero in exact arithmetic (e.g. the sender-side bias of dot attention with a
  masked softmax) and only rounding noise in both forms.
  """
  top = max(float(np.max(np.abs(np.asarray(w)))) for w in jax.tree.leaves(want))
  errs = jax.tree.map(
      lambda g, w: float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w)))
                         / max(float(np.max(np.abs(np.asarray(w)))), floor * top)), got, want)
  return max(jax.tree.leaves(errs))


def assert_equal_in_float64(cfg_a, cfg_b, params, nodes, value_rtol=1e-11):
  """Loss values and gradients of two graph settings agree to float64 rounding."""
  with jax.enable_x64(True):
    v_a, g_a = value_and_grads(cfg_a, params, nodes, jnp.float64)
    v_b, g_b = value_and_grads(cfg_b, params, nodes, jnp.float64)
    np.testing.assert_allclose(v_a, v_b, rtol=value_rtol)
    assert max_rel_err(g_a, g_b) < 1e-10


CASES = [dict(use_att="dot"), dict(use_att="dot", scan="k_pass"),
         dict(use_att="dot", adjacency="masked"),
         dict(use_att="simple", use_positional_emb=True, scalewise_update=False),
         dict(use_att="simple", adjacency="masked", use_norm="none"),
         dict(use_att="none", use_norm="none"), dict(use_att="none", scan="k_pass")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_rewrite_equals_literal_form_in_float64(case):
  literal, rewrite = cfg_of(pair_rewrite=False, **case), cfg_of(pair_rewrite=True, **case)
  params, nodes = params_and_nodes(rewrite)
  with jax.enable_x64(True):
    v_lit, g_lit = value_and_grads(literal, params, nodes, jnp.float64)
    v_new, g_new = value_and_grads(rewrite, params, nodes, jnp.float64)
    assert g_new[1].dtype == jnp.float64
    np.testing.assert_allclose(v_new, v_lit, rtol=1e-11)
    assert max_rel_err(g_new, g_lit) < 1e-10
    # And the float64 output is the NumPy reference's.
    out = jax.jit(RSTGGraph(rewrite, dtype=jnp.float64).apply)(
        {"params": jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)},
        jnp.asarray(nodes, jnp.float64))
    np.testing.assert_allclose(out, ref.rstg_graph(params, nodes, rewrite), rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("case", CASES[:2] + CASES[3:4], ids=["dot", "dot-k_pass", "simple"])
def test_float32_rewrite_gradients_are_float32_rounding_of_float64(case):
  literal, rewrite = cfg_of(pair_rewrite=False, **case), cfg_of(pair_rewrite=True, **case)
  params, nodes = params_and_nodes(rewrite, seed=4)
  with jax.enable_x64(True):
    _, g64 = value_and_grads(literal, params, nodes, jnp.float64)
  _, g_new = value_and_grads(rewrite, params, nodes, jnp.float32)
  _, g_lit = value_and_grads(literal, params, nodes, jnp.float32)
  err_new, err_lit = max_rel_err(g_new, g64, 1e-3), max_rel_err(g_lit, g64, 1e-3)
  assert err_new < 1e-4, (err_new, err_lit)
  assert err_new < 10 * err_lit + 1e-6, (err_new, err_lit)


def test_message_gradient_matches_finite_differences():
  """GatherLayerNorm's gradient w.r.t. messages and weights, against central differences."""
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.key(0), 5)
    msg = jax.nn.relu(jax.random.normal(keys[0], (2, 14, 14, D), jnp.float64))
    logits = jax.random.normal(keys[1], (2, 14, 14), jnp.float64)
    p = {"scale": 1 + 0.3 * jax.random.normal(keys[2], (D,), jnp.float64),
         "bias": 0.3 * jax.random.normal(keys[3], (D,), jnp.float64)}
    module = GatherLayerNorm(dtype=jnp.float64)

    def f(m, lg):
      return jnp.sum(jnp.sin(module.apply({"params": p}, m, jax.nn.softmax(lg))))

    grads = jax.grad(f, argnums=(0, 1))(msg, logits)
    dirs = [jax.random.normal(k, a.shape, jnp.float64)
            for k, a in zip(jax.random.split(keys[4]), (msg, logits))]
    eps = 1e-6
    fd = (f(msg + eps * dirs[0], logits + eps * dirs[1])
          - f(msg - eps * dirs[0], logits - eps * dirs[1])) / (2 * eps)
    analytic = jnp.vdot(grads[0], dirs[0]) + jnp.vdot(grads[1], dirs[1])
    np.testing.assert_allclose(analytic, fd, rtol=1e-7)
    # And its value is the literal LN-then-gather.
    y = ref.layer_norm(np.asarray(msg), 3, {k: np.asarray(v) for k, v in p.items()})
    want = np.einsum("bij,bijm->bim", np.asarray(jax.nn.softmax(logits)), y)
    np.testing.assert_allclose(module.apply({"params": p}, msg, jax.nn.softmax(logits)),
                               want, rtol=1e-12, atol=1e-12)


def test_rewrite_keeps_parameter_tree():
  a, b = cfg_of(pair_rewrite=False), cfg_of(pair_rewrite=True)
  nodes = jnp.zeros(SHAPE)
  shapes = lambda c: jax.tree.map(jnp.shape, jax.eval_shape(RSTGGraph(c).init,
                                                            jax.random.key(0), nodes))
  assert shapes(a) == shapes(b)
