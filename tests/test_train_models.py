"""The SyncMNIST classifiers: heads, combinations, parameter counts."""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_configs import syncmnist_common
from rstg_jax.models.classifiers import syncmnist_model

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def config(model, arg="tiny"):
  module = syncmnist_common
  return module.make_config(model, arg)


def _num_params(model, frames=10):
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, frames, 64, 64, 1),
                                                        jnp.uint8), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def test_paper_configs_build_with_the_expected_backbone():
  """Full-size models, shapes only (jax.eval_shape: no memory, no compile)."""
  backbone = 3 * 3 * 1 * 512 + 512 + 2 * (3 * 3 * 512 * 512 + 512)   # spec §8.1
  head = 512 * 46 + 46
  assert _num_params(syncmnist_model.build_model(config("mean", "").model)) == (
      backbone + 2 * 512 + head)                      # + BatchNorm scale/bias
  lstm = 4 * (512 * 512 + 512 * 512 + 512)
  assert _num_params(syncmnist_model.build_model(config("lstm", "").model)) == (
      backbone + 2 * 512 + lstm + head)
  rstg = _num_params(syncmnist_model.build_model(config("rstg", "").model))
  assert rstg > backbone + head + 2 * lstm            # two LSTMs and the MLPs


def test_plus_combination_starts_as_the_mean_baseline():
  video = np.random.RandomState(0).randint(0, 256, (4, 3, 64, 64, 1)).astype(np.uint8)
  c = config("rstg")
  c.model.backbone.width = c.model.graph.node_feat_dim = c.model.graph.message_dims = 8
  c.model.graph.num_process_iter = 1
  c.model.combine, c.model.residual_norm = "plus", "LN"
  plus = syncmnist_model.build_model(c.model)
  m = config("mean")
  m.model.backbone.width = 8
  mean = syncmnist_model.build_model(m.model)
  variables = jax.jit(lambda: plus.init(jax.random.PRNGKey(0), video, train=False))()
  shared = {k: variables["params"][k] for k in ("backbone", "baseline_bn", "pred")}
  logits_plus = jax.jit(lambda v: plus.apply(v, video, train=False))(variables)
  logits_mean = jax.jit(lambda v: mean.apply(v, video, train=False))(
      {"params": shared, "batch_stats": {"baseline_bn": variables["batch_stats"]
                                         ["baseline_bn"]}})
  assert logits_plus.shape == (4, 46)
  np.testing.assert_array_equal(logits_plus, logits_mean)


def test_bad_model_settings_fail_clearly():
  c = config("mean")
  c.model.head = "transformer"
  with pytest.raises(ValueError, match=r"config.model.head='transformer' is not one of"):
    syncmnist_model.build_model(c.model)
  c = config("rstg")
  c.model.graph.use_att = "cosine"
  with pytest.raises(ValueError, match=r"GraphConfig.use_att='cosine'"):
    syncmnist_model.build_model(c.model)


# --- motion-aware baselines and graph ablations (issue 13) -------------------------


def _small(model, **graph):
  c = config(model)
  c.model.backbone.width = 4
  c.model.backbone.num_stages = 2
  c.model.lstm.units = 6
  c.model.graph.node_feat_dim = c.model.graph.message_dims = 6
  c.model.graph.update(graph)
  if model == "rstg":
    c.model.combine, c.model.residual_norm = "serial", "none"
  return syncmnist_model.build_model(c.model)


def _logits_after_changing_frame(model, frame, shape=(2, 6, 32, 32, 1)):
  """Logits of a random video and of the same video with one frame replaced."""
  rng = np.random.RandomState(1)
  video = rng.randint(0, 256, shape).astype(np.uint8)
  other = video.copy()
  other[:, frame] = rng.randint(0, 256, shape[2:])
  variables = model.init(jax.random.PRNGKey(0), video, train=False)
  run = jax.jit(lambda x: model.apply(variables, x, train=False))
  return variables, np.asarray(run(video)), np.asarray(run(other))


def test_conv3d_backbone_mixes_neighbouring_frames_only():
  model = syncmnist_model.build_model(config("conv3d").model)
  assert model.head == "mean" and model.backbone_temporal_kernel == 3
  c = config("conv3d")
  c.model.backbone.width, c.model.backbone.num_stages = 4, 2
  from rstg_jax.models.backbones.simple_conv import SimpleConv
  net = SimpleConv(width=4, num_stages=2, temporal_kernel=3, input_scale=1 / 255)
  video = np.random.RandomState(0).randint(0, 256, (1, 8, 32, 32, 1)).astype(np.uint8)
  variables = net.init(jax.random.PRNGKey(0), video)
  assert variables["params"]["conv1"]["kernel"].shape == (3, 3, 3, 1, 4)
  changed = video.copy()
  changed[:, 0] = 255 - changed[:, 0]
  diff = np.abs(net.apply(variables, video) - net.apply(variables, changed)).max(axis=(0, 2, 3, 4))
  # Two stages of temporal kernel 3: frame 0 reaches frames 0..2, not 3.. .
  assert (diff[:3] > 0).all() and (diff[3:] == 0).all()
  with pytest.raises(ValueError, match="temporal_kernel must be odd"):
    SimpleConv(width=4, temporal_kernel=2).init(jax.random.PRNGKey(0), video)


def test_convlstm_head_sees_every_frame_and_keeps_positions():
  model = _small("convlstm")
  variables, base, changed = _logits_after_changing_frame(model, frame=0)
  assert base.shape == (2, 46)
  assert np.abs(base - changed).max() > 0       # the first frame reaches the last output
  kernel = variables["params"]["convlstm_cell"]
  assert any(leaf.shape[:2] == (3, 3) for leaf in jax.tree.leaves(kernel))


def test_nonlocal_baseline_is_i3d_plus_a_block_that_starts_as_the_identity():
  """'nonlocal' is the conv3d baseline plus a Non-Local block whose BatchNorm scale
  starts at zero: equal logits at initialisation, different once the block is on."""
  video = np.random.RandomState(3).randint(0, 256, (2, 6, 32, 32, 1)).astype(np.uint8)
  models = {}
  for name in ("nonlocal", "conv3d"):
    c = config(name)
    c.model.backbone.width, c.model.backbone.num_stages = 8, 2
    models[name] = syncmnist_model.build_model(c.model)
  assert models["nonlocal"].backbone_temporal_kernel == 3
  variables = models["nonlocal"].init(jax.random.PRNGKey(0), video, train=False)
  block = variables["params"]["nonlocal"]
  assert set(block) == {"theta", "phi", "g", "out", "bn"}
  conv3d_vars = {"params": {k: v for k, v in variables["params"].items() if k != "nonlocal"},
                 "batch_stats": {k: v for k, v in variables["batch_stats"].items()
                                 if k != "nonlocal"}}
  run = lambda m, v: np.asarray(jax.jit(lambda x: m.apply(v, x, train=False))(video))
  np.testing.assert_array_equal(run(models["nonlocal"], variables),
                                run(models["conv3d"], conv3d_vars))
  on = jax.tree_util.tree_map(lambda x: x, variables)
  on["params"]["nonlocal"]["bn"]["scale"] = jnp.ones_like(block["bn"]["scale"])
  on["params"]["nonlocal"]["out"]["kernel"] = block["out"]["kernel"] * 100
  assert np.abs(run(models["nonlocal"], on) - run(models["conv3d"], conv3d_vars)).max() > 1e-3


@pytest.mark.parametrize("stages", ["space", "time"])
def test_graph_ablations_drop_their_stage(stages):
  model = _small("rstg", stages=stages, norm_scope="per_frame", pre_graph_bn=False)
  variables, _, _ = _logits_after_changing_frame(model, frame=0)
  cell = variables["params"]["graph"]["graph"]["cell"]
  assert set(cell) == ({"space"} if stages == "space" else {"lstm_int", "lstm_ext"})


def test_space_only_graph_is_blind_to_frame_order():
  """Without LSTMs the graph sees one frame at a time and the read-out averages over
  time, so reversing the frames cannot change the logits; with them it does."""
  video = np.random.RandomState(2).randint(0, 256, (2, 5, 32, 32, 1)).astype(np.uint8)
  for stages, blind in (("space", True), ("space_time", False)):
    model = _small("rstg", stages=stages, norm_scope="per_frame")
    variables = model.init(jax.random.PRNGKey(0), video, train=False)
    run = jax.jit(lambda x, v=variables, m=model: m.apply(v, x, train=False))
    gap = np.abs(np.asarray(run(video)) - np.asarray(run(video[:, ::-1]))).max()
    assert (gap < 1e-5) if blind else (gap > 1e-4), (stages, gap)


def test_time_only_graph_nodes_never_exchange_messages():
  """stages='time': a node's output depends on its own input only."""
  from rstg_jax.models.graph.graph_config import GraphConfig
  from rstg_jax.models.graph.rstg_graph import RSTGGraph
  cfg = GraphConfig(node_feat_dim=6, message_dims=6, use_norm="none", stages="time")
  graph = RSTGGraph(cfg)
  nodes = np.random.RandomState(3).randn(1, 4, cfg.num_nodes, 6).astype(np.float32)
  variables = graph.init(jax.random.PRNGKey(0), nodes)
  other = nodes.copy()
  other[:, :, 5] += 1.0
  diff = np.abs(graph.apply(variables, nodes) - graph.apply(variables, other)).max(axis=(0, 1, 3))
  assert diff[5] > 0 and np.delete(diff, 5).max() == 0
  with pytest.raises(ValueError, match="GraphConfig.stages='spacetime'"):
    GraphConfig(stages="spacetime")


@pytest.mark.parametrize("scan", ["fused", "k_pass"])
def test_residual_space_stage_adds_to_the_node_states(scan):
  """space_residual: z + space(z) instead of space(z), same parameters. With one
  iteration and no LSTMs the graph is the space stage alone, so the residual graph's
  output minus the original's is exactly the input."""
  from rstg_jax.models.graph.graph_config import GraphConfig
  from rstg_jax.models.graph.rstg_graph import RSTGGraph
  nodes = np.random.RandomState(4).randn(2, 3, 14, 6).astype(np.float32)
  kwargs = dict(node_feat_dim=6, message_dims=6, use_norm="LN", norm_scope="per_frame",
                num_process_iter=1, stages="space", scan=scan)
  plain = RSTGGraph(GraphConfig(**kwargs))
  variables = plain.init(jax.random.PRNGKey(0), nodes)
  residual = RSTGGraph(GraphConfig(space_residual=True, **kwargs))
  got = residual.apply(variables, nodes) - plain.apply(variables, nodes)
  # The pre-graph LN (per frame, identity affine at init) is what reaches the stage.
  mean = nodes.mean(axis=(2, 3), keepdims=True)
  normed = (nodes - mean) / np.sqrt(nodes.var(axis=(2, 3), keepdims=True) + 1e-12)
  np.testing.assert_allclose(got, normed, atol=2e-5)


def test_moment_pooling_locates_a_point_inside_its_node():
  from rstg_jax.models.graph import area_resize
  x = np.zeros((6, 6, 1), np.float32)
  x[1, 4, 0] = 1.0                      # row 1, column 4 of a 6x6 map
  nodes = np.asarray(area_resize.pool_to_nodes(x, (2, 1), moments=True))  # [5, 3]
  # Scale 2: cells of 3x3 pixels; the point is in the top-right cell (node 1), at
  # pixel centre 1.5 of rows 0..3 (centre: 0) and 4.5 of columns 3..6 (centre: 0).
  np.testing.assert_allclose(nodes[1], [1 / 9, 0.0, 0.0], atol=1e-7)
  # Scale 1 (node 4): the whole map; centre row 1.5 of 6 -> -0.5, column 4.5 -> 0.5.
  np.testing.assert_allclose(nodes[4], [1 / 36, -0.5 / 36, 0.5 / 36], atol=1e-7)
  assert np.abs(nodes[[0, 2, 3]]).max() == 0
  plain = np.asarray(area_resize.pool_to_nodes(x, (2, 1)))
  np.testing.assert_array_equal(plain, nodes[:, :1])


def test_rstg_with_moment_pooling_builds_and_keeps_the_map_width():
  model = _small("rstg", node_pooling="moments")
  variables, base, _ = _logits_after_changing_frame(model, frame=0)
  graph = variables["params"]["graph"]["graph"]
  assert graph["project_i3d"]["kernel"].shape == (3 * 4, 6)       # 3C -> D
  assert graph["project_back_to_i3d"]["kernel"].shape == (6, 4)   # D -> C
  assert np.isfinite(base).all()
