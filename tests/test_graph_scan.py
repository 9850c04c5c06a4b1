"""The RSTG recurrence (fused scan and K-pass) against an independent NumPy reference."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph, initial_carry, not_streamable_reason
import rstg_numpy_reference as ref

D = 8
SHAPE = (2, 4, 14, D)  # [B, T, N, D]


def small(**kw):
  kw.setdefault("scan", "fused")
  return GraphConfig(node_feat_dim=D, message_dims=D, **kw)


def init_and_apply(cfg, seed=0):
  nodes = jax.random.normal(jax.random.key(seed), SHAPE)
  graph = RSTGGraph(cfg)
  variables = jax.jit(graph.init)(jax.random.key(seed + 1), nodes)
  # Non-zero biases and LN affines, so that the test would see a misplaced one.
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda p: p + 0.1 * rng.normal(size=p.shape).astype(np.float32),
                        variables["params"])
  return graph, params, nodes


MODES = [dict(use_att=att, scalewise_update=sw, use_positional_emb=pe,
              use_norm=("none" if att == "none" else "LN"))
         for att in ("dot", "simple", "none") for sw in (True, False) for pe in (False, True)]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(f"{v}" for v in m.values()))
def test_fused_scan_equals_reference(mode):
  cfg = small(**mode)
  graph, params, nodes = init_and_apply(cfg)
  got = jax.jit(graph.apply)({"params": params}, nodes)
  want = ref.rstg_graph(params, nodes, cfg)
  assert got.shape == SHAPE
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("att", ["dot", "simple", "none"])
def test_masked_adjacency_and_k_pass_equal_reference(att):
  for cfg in (small(use_att=att, adjacency="masked", use_positional_emb=True),
              small(use_att=att, scan="k_pass")):
    graph, params, nodes = init_and_apply(cfg, seed=3)
    got = jax.jit(graph.apply)({"params": params}, nodes)
    np.testing.assert_allclose(got, ref.rstg_graph(params, nodes, cfg), atol=1e-5, rtol=1e-5)


def test_masked_differs_from_reference_adjacency():
  cfg = small(use_att="dot")
  graph, params, nodes = init_and_apply(cfg)
  a = jax.jit(graph.apply)({"params": params}, nodes)
  b = jax.jit(RSTGGraph(dataclasses.replace(cfg, adjacency="masked")).apply)(
      {"params": params}, nodes)
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3


def test_per_frame_norm_streams_exactly():
  cfg = small(use_att="dot", norm_scope="per_frame", use_positional_emb=True)
  graph, params, nodes = init_and_apply(cfg)
  whole = jax.jit(graph.apply)({"params": params}, nodes)
  np.testing.assert_allclose(whole, ref.rstg_graph(params, nodes, cfg), atol=1e-5, rtol=1e-5)
  carry = initial_carry(cfg, SHAPE[0])
  step = jax.jit(lambda c, x: graph.apply({"params": params}, x, carry=c))
  frames = []
  for t in range(SHAPE[1]):
    carry, o_t = step(carry, nodes[:, t])
    frames.append(o_t)
  # Streaming runs the step-by-step scan's cell: equal to it exactly, and to the
  # default skewed schedule (whose batched matmuls round differently) to rounding.
  stepwise = jax.jit(RSTGGraph(dataclasses.replace(cfg, wavefront=False)).apply)(
      {"params": params}, nodes)
  np.testing.assert_allclose(jnp.stack(frames, 1), stepwise, atol=1e-6)
  np.testing.assert_allclose(jnp.stack(frames, 1), whole, atol=1e-5)
  k_pass = jax.jit(RSTGGraph(dataclasses.replace(cfg, scan="k_pass")).apply)(
      {"params": params}, nodes)
  np.testing.assert_allclose(jnp.stack(frames, 1), k_pass, atol=1e-5)


def test_reference_whole_clip_norm_refuses_to_stream():
  cfg = small()  # norm_scope='clip', as the original
  assert "whole clip" in not_streamable_reason(cfg)
  graph, params, nodes = init_and_apply(cfg)
  with pytest.raises(ValueError, match="cannot stream"):
    graph.apply({"params": params}, nodes[:, 0], carry=initial_carry(cfg, SHAPE[0]))


def test_syncmnist_settings_with_batch_norm_eval_mode_k_pass_equals_fused():
  cfg = small(use_att="simple", scalewise_update=False, use_norm="none",
              use_positional_emb=True, pre_graph_bn=True, image_dim=64)
  nodes = jax.random.normal(jax.random.key(0), SHAPE)
  variables = jax.jit(RSTGGraph(cfg).init)(jax.random.key(1), nodes)
  fused = jax.jit(RSTGGraph(cfg).apply)(variables, nodes)
  kpass = jax.jit(RSTGGraph(dataclasses.replace(cfg, scan="k_pass")).apply)(variables, nodes)
  np.testing.assert_allclose(fused, kpass, atol=1e-5)
  train_apply = jax.jit(lambda v, x: RSTGGraph(cfg).apply(v, x, train=True,
                                                         mutable=["batch_stats"]))
  _, updated = train_apply(variables, nodes)
  assert not np.allclose(updated["batch_stats"]["batch_normalization"]["mean"], 0)


@pytest.mark.parametrize("scan", ["fused", "k_pass"])
@pytest.mark.parametrize("k", [4, 5])
def test_time_stage_iterations_for_k_above_3(scan, k):
  """K > 3: the original runs the time stage only in iterations 0, 1, 2 (spec §6.2)."""
  original = small(num_process_iter=k, scan=scan)
  assert original.time_iters == "original" and original.time_stage_iters == (0, 1, 2)
  graph, params, nodes = init_and_apply(original, seed=k)
  got = jax.jit(graph.apply)({"params": params}, nodes)
  np.testing.assert_allclose(got, ref.rstg_graph(params, nodes, original, (0, 1, 2)),
                             atol=1e-5, rtol=1e-5)
  every = dataclasses.replace(original, time_iters="all")
  got_all = jax.jit(RSTGGraph(every).apply)({"params": params}, nodes)
  # Two more LSTM passes in float32: rounding grows to ~2e-5 on a few entries.
  np.testing.assert_allclose(got_all, ref.rstg_graph(params, nodes, every, range(k)),
                             atol=1e-4, rtol=1e-5)
  assert np.abs(np.asarray(got_all) - np.asarray(got)).max() > 1e-3


def test_streaming_carry_follows_time_stage_iterations():
  cfg = small(num_process_iter=5, norm_scope="per_frame")
  assert len(initial_carry(cfg, 2)) == 4                      # iterations 0, 1, 2 + external
  assert len(initial_carry(dataclasses.replace(cfg, time_iters="all"), 2)) == 6
  graph, params, nodes = init_and_apply(cfg)
  whole = jax.jit(graph.apply)({"params": params}, nodes)
  carry, frames = initial_carry(cfg, SHAPE[0]), []
  for t in range(SHAPE[1]):
    carry, o_t = graph.apply({"params": params}, nodes[:, t], carry=carry)
    frames.append(o_t)
  np.testing.assert_allclose(jnp.stack(frames, 1), whole, atol=1e-5)
  with pytest.raises(ValueError, match="time_iters='every'"):
    small(time_iters="every")


def test_message_batch_norm_fused_initialises_and_equals_k_pass_in_eval_mode():
  """The fused scan carries BN statistics; they must exist before it (init used to fail)."""
  cfg = small(use_norm="BN")
  nodes = jax.random.normal(jax.random.key(0), SHAPE)
  variables = jax.jit(RSTGGraph(cfg).init)(jax.random.key(1), nodes)
  assert "batch_stats" in variables
  fused = jax.jit(RSTGGraph(cfg).apply)(variables, nodes)
  kpass = jax.jit(RSTGGraph(dataclasses.replace(cfg, scan="k_pass")).apply)(variables, nodes)
  np.testing.assert_allclose(fused, kpass, atol=1e-5)
  out, updated = jax.jit(lambda v, x: RSTGGraph(cfg).apply(
      v, x, train=True, mutable=["batch_stats"]))(variables, nodes)
  assert out.shape == SHAPE and np.all(np.isfinite(out))
  before, after = (jax.tree.leaves(v["batch_stats"]) for v in (variables, updated))
  assert any(not np.allclose(a, b) for a, b in zip(after, before))
