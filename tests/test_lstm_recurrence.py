"""The hand-written LSTM backward pass (GraphConfig.lstm_vjp) against JAX's derivative.

Compared in float64, where rounding is ~1e-15, so a wrong term shows; the recurrence
alone against central finite differences (independent of JAX's autodiff); and float32
against float64.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.graph import lstm_recurrence
from rstg_jax.models.graph.rstg_graph import RSTGGraph
from test_graph_rewrite import (assert_equal_in_float64, cfg_of, max_rel_err,
                                params_and_nodes, value_and_grads)

CASES = [dict(), dict(time_iters="all"), dict(stages="time"),
         dict(use_att="simple", use_positional_emb=True)]


@pytest.mark.parametrize("case", CASES, ids=["default", "all-iters", "time-only", "simple"])
def test_hand_vjp_equals_jax_derivative_in_float64(case):
  hand = cfg_of(scan="k_pass", lstm_vjp=True, **case)
  autodiff = dataclasses.replace(hand, lstm_vjp=False)
  params, nodes = params_and_nodes(hand, seed=2)
  assert_equal_in_float64(hand, autodiff, params, nodes, value_rtol=1e-12)


def test_recurrence_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    t, m, d = 5, 3, 4
    keys = jax.random.split(jax.random.key(0), 4)
    w = 0.5 * jax.random.normal(keys[0], (d, 4 * d), jnp.float64)
    b = 0.3 * jax.random.normal(keys[1], (4 * d,), jnp.float64)
    x = jax.random.normal(keys[2], (t, m, 4 * d), jnp.float64)

    def f(w, b, x):
      return jnp.sum(jnp.sin(2.0 * lstm_recurrence.recurrence(w, b, x, jnp.float64)))

    grads = jax.grad(f, argnums=(0, 1, 2))(w, b, x)
    dirs = [jax.random.normal(k, a.shape, jnp.float64)
            for k, a in zip(jax.random.split(keys[3], 3), (w, b, x))]
    eps = 1e-6
    plus = [a + eps * u for a, u in zip((w, b, x), dirs)]
    minus = [a - eps * u for a, u in zip((w, b, x), dirs)]
    fd = (f(*plus) - f(*minus)) / (2 * eps)
    analytic = sum(jnp.vdot(g, u) for g, u in zip(grads, dirs))
    np.testing.assert_allclose(analytic, fd, rtol=1e-7)


def test_float32_hand_vjp_is_float32_rounding_of_float64():
  hand = cfg_of(scan="k_pass", lstm_vjp=True)
  params, nodes = params_and_nodes(hand, seed=5)
  with jax.enable_x64(True):
    _, g64 = value_and_grads(dataclasses.replace(hand, lstm_vjp=False), params, nodes,
                             jnp.float64)
  _, g_hand = value_and_grads(hand, params, nodes, jnp.float32)
  _, g_auto = value_and_grads(dataclasses.replace(hand, lstm_vjp=False), params, nodes,
                              jnp.float32)
  err_hand, err_auto = max_rel_err(g_hand, g64, 1e-3), max_rel_err(g_auto, g64, 1e-3)
  assert err_hand < 1e-4, (err_hand, err_auto)
  assert err_hand < 10 * err_auto + 1e-6, (err_hand, err_auto)


def test_k_pass_uses_the_hand_vjp_only_when_asked():
  params, nodes = params_and_nodes(cfg_of(scan="k_pass"))

  def jaxpr_text(**kw):
    graph = RSTGGraph(cfg_of(scan="k_pass", **kw))
    return str(jax.make_jaxpr(lambda p: graph.apply({"params": p}, nodes))(params))

  assert "custom_vjp_call" in jaxpr_text(lstm_vjp=True)
  assert "custom_vjp_call" not in jaxpr_text(lstm_vjp=False)
  assert "custom_vjp_call" not in jaxpr_text(lstm_vjp=True, remat=True)
