"""The original's LayerNorm (tf.contrib.layers.layer_norm semantics) built from flax's."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.graph import norms
from rstg_jax.models.graph.readouts import ResidualNorm
import rstg_numpy_reference as ref


@pytest.mark.parametrize("num_axes", [1, 2, 3])
def test_tf_layer_norm_has_tf_contrib_semantics(num_axes):
  """Statistics over the last `num_axes` axes jointly, per example; scale and bias of
  the last axis only; epsilon 1e-12 (spec §5.5): against float64 NumPy."""
  rng = np.random.default_rng(num_axes)
  x = rng.normal(1.5, 3.0, size=(2, 3, 5, 6))
  ln = norms.make_norm("LN", "message", num_axes, train=True, dtype=jnp.float64)
  with jax.enable_x64(True):
    variables = ln.init(jax.random.key(0), jnp.asarray(x))
    assert ln.name == "message_ln"
    assert jax.tree.map(jnp.shape, variables) == {
        "params": {"scale": (6,), "bias": (6,)}}
    p = {"scale": rng.normal(size=6), "bias": rng.normal(size=6)}
    got = ln.apply({"params": p}, jnp.asarray(x))
    want = ref.layer_norm(x, num_axes, p)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-12)
    # Not the per-last-axis LayerNorm (unless it spans one axis).
    if num_axes > 1:
      assert np.abs(np.asarray(got) - ref.layer_norm(x, 1, p)).max() > 1e-3
    # epsilon 1e-12: a constant block is normalised to zero (then + bias).
    flat = ln.apply({"params": p}, jnp.ones_like(jnp.asarray(x)))
    np.testing.assert_allclose(np.asarray(flat), np.broadcast_to(p["bias"], x.shape))


def test_tf_layer_norm_statistics_in_float32_under_bfloat16():
  x = jax.random.normal(jax.random.key(1), (2, 4, 14, 32)) * 3 + 100.0
  ln = norms.tf_layer_norm("ln", 3, dtype=jnp.bfloat16)
  variables = ln.init(jax.random.key(0), x)
  got = ln.apply(variables, x.astype(jnp.bfloat16))
  assert got.dtype == jnp.bfloat16
  assert variables["params"]["scale"].dtype == jnp.float32
  want = ref.layer_norm(np.asarray(x.astype(jnp.bfloat16), np.float64), 3)
  # bfloat16 statistics would lose the mean of 100 (8 bits of mantissa) entirely.
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=0.02)


def test_residual_layer_norm_is_zero_at_init_and_has_no_layer_norm_scale():
  y = jax.random.normal(jax.random.key(2), (2, 7, 7, 16))
  res = ResidualNorm(kind="LN", num_axes=3)
  variables = res.init(jax.random.key(0), y)
  assert jax.tree.map(jnp.shape, variables) == {"params": {
      "after_graph_ln": {"bias": (16,)}, "after_graph_ln_scale": (16,)}}
  assert not np.asarray(res.apply(variables, y)).any()
