"""RSTGBlock: parameter counts of the paper's settings, zero-init branch, gradients, errors."""
import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.graph.graph_block import RSTGBlock
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph

SMT = GraphConfig()  # the released Something-Something graph: LN, dot, scalewise
SYNCMNIST = GraphConfig(use_att="simple", scalewise_update=False, use_norm="none",
                        use_positional_emb=True, pre_graph_bn=True, image_dim=64)


def param_count(block, shape):
  variables = jax.eval_shape(block.init, jax.random.key(0), jnp.zeros(shape))
  flat = flax.traverse_util.flatten_dict(variables["params"])
  graph = sum(v.size for k, v in flat.items() if k[0] != "residual")
  residual = sum(v.size for k, v in flat.items() if k[0] == "residual")
  return graph, residual


def expected_graph_count(c, d=512, project=True, pe=0, scalewise=True, att="dot",
                         ln=True, bn=False):
  """Spec §11.3 layer shapes, counted independently of the modules."""
  lstm = 4 * (d * d) + 4 * (d * d + d)      # TF-canonical kernel [2d, 4d] + bias [4d]
  dense = lambda i, o: i * o + o
  ln_params = 2 * d if ln else 0
  n = 2 * lstm
  n += dense(2 * (d + pe), d) + dense(d, d) + ln_params          # message MLP + LN
  n += 2 * dense(d, d) + d if att == "dot" else 2 * dense(d, 1) + d   # attention
  n += (3 if scalewise else 1) * (dense(2 * d, d) + dense(d, d)) + ln_params  # update
  n += ln_params                                                 # before_graf LN
  n += 2 * d if bn else 0                                        # SyncMNIST BN
  if project:
    n += dense(c, d) + dense(d, c)
  return n


def test_paper_graph_parameter_counts_match_spec():
  final = param_count(RSTGBlock(SMT, "vec", project=True, residual_norm="LN"),
                      (1, 2, 14, 14, 2048))
  res3 = param_count(RSTGBlock(SMT, "map", project=False, residual_norm="LN"),
                     (1, 2, 28, 28, 512))
  res4 = param_count(RSTGBlock(SMT, "map", project=True, residual_norm="LN"),
                     (1, 2, 14, 14, 1024))
  mnist = param_count(RSTGBlock(SYNCMNIST, "vec"), (1, 2, 6, 6, 512))
  assert final == (expected_graph_count(2048), 2 * 2048)
  assert res3 == (expected_graph_count(512, project=False), 2 * 512)
  assert res4 == (expected_graph_count(1024), 2 * 1024)
  assert mnist == (expected_graph_count(512, project=False, pe=36, scalewise=False,
                                        att="simple", ln=False, bn=True), 0)
  # The rounded figures of spec §11.8.
  assert round(final[0] / 1e6, 2) == 9.98 and final[1] == 4096
  assert round(res3[0] / 1e6, 2) == 7.88
  assert round(res4[0] / 1e6, 2) == 8.93
  assert round(mnist[0] / 1e6, 2) == 5.81
  assert res3[1] + res4[1] == 3072


TINY = GraphConfig(node_feat_dim=16, message_dims=16)


@pytest.mark.parametrize("readout,residual_norm", [("vec", "LN"), ("map", "LN"), ("map", "BN")])
def test_branch_is_exactly_zero_at_init(readout, residual_norm):
  block = RSTGBlock(TINY, readout, project=True, residual_norm=residual_norm)
  x = jax.random.normal(jax.random.key(0), (2, 3, 7, 7, 24))
  variables = jax.jit(block.init)(jax.random.key(1), x)
  y = jax.jit(block.apply)(variables, x)
  assert y.shape == ((2, 24) if readout == "vec" else x.shape)
  assert np.all(np.asarray(y) == 0.0)


def _grad_fn(block, x):
  """One compiled d(loss)/d(params) for every parameter value."""
  def loss(params):
    return jnp.sum(jnp.sin(block.apply({"params": params}, x)))
  return jax.jit(jax.grad(loss))


@pytest.mark.parametrize("cfg,readout,residual_norm", [
    (TINY, "map", "LN"),
    (GraphConfig(node_feat_dim=16, message_dims=16, use_att="simple", scalewise_update=False,
                 use_norm="none", use_positional_emb=True, image_dim=64), "vec", "none"),
])
def test_gradients_reach_every_parameter(cfg, readout, residual_norm):
  block = RSTGBlock(cfg, readout, project=True, residual_norm=residual_norm)
  x = jax.random.normal(jax.random.key(0), (2, 3, 6, 6, 24))
  params = jax.jit(block.init)(jax.random.key(1), x)["params"]
  grad_fn = _grad_fn(block, x)
  if residual_norm == "LN":
    # At init the zero scale blocks the branch (by design): it only gets a gradient.
    flat = flax.traverse_util.flatten_dict(grad_fn(params))
    assert np.abs(flat[("residual", "after_graph_ln_scale")]).max() > 0
    flat_params = flax.traverse_util.flatten_dict(params)
    flat_params[("residual", "after_graph_ln_scale")] = jnp.ones(24)
    params = flax.traverse_util.unflatten_dict(flat_params)
  flat = flax.traverse_util.flatten_dict(grad_fn(params))
  dead = [k for k, g in flat.items() if not np.abs(np.asarray(g)).max() > 0]
  assert not dead, f"no gradient reaches {dead}"


@pytest.mark.parametrize("scan", ["k_pass", "fused"])
def test_remat_gives_the_same_gradients(scan):
  x = jax.random.normal(jax.random.key(0), (2, 3, 6, 6, 16))
  plain = RSTGBlock(GraphConfig(node_feat_dim=16, message_dims=16, scan=scan), "vec")
  remat = RSTGBlock(GraphConfig(node_feat_dim=16, message_dims=16, scan=scan, remat=True),
                    "vec")
  params = jax.jit(plain.init)(jax.random.key(1), x)["params"]
  # Recomputation may reorder float32 sums: gradients up to ~100 agree to ~1e-6 relative.
  chex.assert_trees_all_close(_grad_fn(remat, x)(params), _grad_fn(plain, x)(params),
                              atol=1e-4, rtol=1e-5)


def test_jit_does_not_retrace_for_same_shapes():
  block = RSTGBlock(TINY, "vec", project=True, residual_norm="LN")
  x = jnp.ones((2, 3, 6, 6, 24))
  variables = jax.jit(block.init)(jax.random.key(1), x)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(v, x):
    return block.apply(v, x)

  for i in range(3):
    forward(variables, x + i)


def test_bad_config_values_fail_clearly():
  with pytest.raises(ValueError, match="use_att='dotty'"):
    GraphConfig(use_att="dotty")
  with pytest.raises(ValueError, match="message_dims"):
    GraphConfig(node_feat_dim=512, message_dims=256)
  with pytest.raises(ValueError, match="unknown graph config key.*num_proces_iter"):
    GraphConfig.from_dict({"num_proces_iter": 3})
  graph = RSTGGraph(TINY)
  with pytest.raises(ValueError, match="C=24 channels but the graph's node_feat_dim is 16"):
    graph.init(jax.random.key(0), jnp.zeros((1, 2, 14, 24)))
  with pytest.raises(ValueError, match="T=0"):
    graph.init(jax.random.key(0), jnp.zeros((1, 0, 14, 16)))
  with pytest.raises(ValueError, match=r"N=14, got shape \(1, 2, 9, 16\)"):
    graph.init(jax.random.key(0), jnp.zeros((1, 2, 9, 16)))
  with pytest.raises(ValueError, match="readout='vector'"):
    RSTGBlock(TINY, "vector").init(jax.random.key(0), jnp.zeros((1, 2, 6, 6, 16)))
