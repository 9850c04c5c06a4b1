"""rstg_jax.tools.matmul_ceiling: the inventory of a step's matmuls and their FLOPs."""
import jax
import jax.numpy as jnp

from rstg_jax.tools import matmul_ceiling
from rstg_jax.tools import model_report


def test_inventory_counts_scan_iterations_and_matches_xla_flops():
  w = jnp.ones((16, 32))
  v = jnp.ones((32, 8))

  def fn(x):
    def body(h, _):
      return jnp.tanh(h @ w @ w.T), None
    h, _ = jax.lax.scan(body, x, None, length=5)
    return jnp.einsum("bi,ij->bj", jnp.tanh(h @ w), v)

  x = jnp.ones((4, 16))
  inventory = matmul_ceiling.dot_inventory(jax.make_jaxpr(fn)(x))
  by_shape = {(d.lhs, d.rhs): n for d, n in inventory.items()}
  assert by_shape == {((4, 16), (16, 32)): 6, ((4, 32), (32, 16)): 5,
                      ((4, 32), (32, 8)): 1}
  dot_flops = sum(d.flops * n for d, n in inventory.items())
  assert dot_flops == 2 * 4 * 16 * 32 * 11 + 2 * 4 * 32 * 8
  # Everything else in fn (tanh) is a small part of XLA's count.
  xla = model_report.xla_flops(fn, x)
  assert dot_flops <= xla < 1.1 * dot_flops


def test_gradient_dots_and_timing():
  def loss(w, x):
    return jnp.sum(jnp.tanh(x @ w))

  w, x = jnp.ones((8, 4)), jnp.ones((3, 8))
  inventory = matmul_ceiling.dot_inventory(jax.make_jaxpr(jax.grad(loss))(w, x))
  # Forward x @ w and the weight gradient x^T dy.
  assert sum(inventory.values()) == 2
  seconds, flops, rows = matmul_ceiling.matmul_seconds(inventory, repeats=2)
  assert seconds > 0 and flops == 2 * 2 * 3 * 8 * 4 and len(rows) == 2
