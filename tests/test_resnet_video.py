"""C2D / I3D ResNet-50 video backbones, Non-Local blocks, backbone BatchNorm modes."""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.backbones import batch_norm
from rstg_jax.models.backbones import resnet_video
from rstg_jax.models.backbones.nonlocal_block import NonLocalBlock
from rstg_jax.models.backbones.video_conv import VideoConv
from rstg_jax.models.classifiers import smt_model
from rstg_jax.models.graph.graph_block import RSTGBlock
from rstg_jax.models.graph.graph_config import GraphConfig
import model_helpers

FULL_CLIP = (1, 32, 224, 224, 3)
# These tests are compile-bound on CPU: skip XLA's backend optimisations.
fast_jit = functools.partial(
    jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _abstract_init(model, shape):
  return model_helpers.abstract_variables(model, shape)


def _shapes(tree):
  return jax.tree_util.tree_map(lambda a: tuple(a.shape), tree)


def test_full_size_parameter_counts_and_names_match_the_original():
  """Spec §8.2-§8.4 counts (conv + BN affine) and §11.2 names / kernel shapes."""
  i3d = _abstract_init(resnet_video.ResNetVideo(backbone="i3d"), FULL_CLIP)["params"]
  c2d = _abstract_init(resnet_video.ResNetVideo(backbone="c2d"), FULL_CLIP)["params"]
  nl = _abstract_init(resnet_video.ResNetVideo(
      backbone="i3d", place_nonlocal=("res3", "res4")), FULL_CLIP)["params"]
  assert model_helpers.count(i3d) / 1e6 == pytest.approx(27.22, abs=0.005)
  assert model_helpers.count(c2d) / 1e6 == pytest.approx(23.51, abs=0.005)
  assert (model_helpers.count(nl) - model_helpers.count(i3d)) / 1e6 == pytest.approx(
      7.36, abs=0.005)

  s = _shapes(i3d)
  assert s["conv1"]["kernel"] == (5, 7, 7, 3, 64)
  assert set(s["res_conv1_bn"]) == {"scale", "bias"}
  assert s["res2_0"]["branch2a"]["kernel"] == (3, 1, 1, 64, 64)      # inflated
  assert s["res2_0"]["branch1"]["kernel"] == (1, 1, 1, 64, 256)
  assert s["res3_1"]["branch2a"]["kernel"] == (1, 1, 1, 512, 128)    # not inflated
  assert "branch1" not in s["res3_1"]
  assert s["res4_0"]["branch2b"]["kernel"] == (1, 3, 3, 256, 256)
  assert s["res5_1"]["branch2a"]["kernel"] == (3, 1, 1, 2048, 512)   # res5 [0, 1, 0]
  assert s["res5_2"]["branch2c_bn"]["scale"] == (2048,)
  assert _shapes(c2d)["conv1"]["kernel"] == (1, 7, 7, 3, 64)
  assert all(_shapes(c2d)[f"res{r}_0"]["branch2a"]["kernel"][0] == 1 for r in (2, 3, 4, 5))
  # I3D inflation pattern: which blocks have a 3x1x1 branch2a.
  inflated = sorted(k for k, v in s.items()
                    if k.startswith("res") and "branch2a" in v
                    and v["branch2a"]["kernel"][0] == 3)
  assert inflated == ["res2_0", "res2_1", "res2_2", "res3_0", "res3_2", "res4_0",
                      "res4_2", "res4_4", "res5_1"]
  nls = sorted(k for k in nl if k.startswith("nonlocal"))
  assert nls == ["nonlocal_conv3_1", "nonlocal_conv3_3", "nonlocal_conv4_1",
                 "nonlocal_conv4_3", "nonlocal_conv4_5"]
  assert _shapes(nl)["nonlocal_conv4_5"]["theta"]["kernel"] == (1, 1, 1, 1024, 512)
  assert _shapes(nl)["nonlocal_conv3_1"]["out"]["kernel"] == (1, 1, 1, 256, 512)


@pytest.mark.parametrize("size,res5", [(224, 14), (256, 16)])
def test_i3d_endpoints_halve_time_after_res2(size, res5):
  """Spec §8.2 shapes: 32 frames to conv1/res2, 16 from pool2 on; res5 stride 1."""
  model = resnet_video.ResNetVideo(backbone="i3d")
  shape = (1, 32, size, size, 3)
  v = _abstract_init(model, shape)
  ends = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v,
                        jax.ShapeDtypeStruct(shape, jnp.float32))
  got = {k: tuple(e.shape[1:]) for k, e in ends.items()}
  c1 = (size - 1) // 2 + 1
  p1 = (c1 - 3) // 2 + 1
  assert got == {
      "conv1": (32, c1, c1, 64), "pool1": (32, p1, p1, 64), "res2": (32, p1, p1, 256),
      "pool2": (16, p1, p1, 256), "res3": (16, 2 * res5, 2 * res5, 512),
      "res4": (16, res5, res5, 1024), "res5": (16, res5, res5, 2048)}
  assert resnet_video.feature_map_size(size) == res5


def test_graphs_in_res3_res4_and_final_see_16_frames():
  """I3D bookkeeping: 32 input frames reach every graph as 16 (spec §8.5)."""
  g = GraphConfig()
  model = smt_model.VideoClassifier(
      backbone=resnet_video.ResNetVideo(backbone="i3d", place_graph=("res3", "res4"),
                                        graph=g),
      graph_final=True, graph=g, pool5_window=(16, 14, 14))
  seen = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, RSTGBlock) and context.method_name == "__call__":
      seen[context.module.name] = tuple(args[0].shape)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    _abstract_init(model, FULL_CLIP)
  assert seen == {"graph_res3": (1, 16, 28, 28, 512),
                  "graph_res4": (1, 16, 14, 14, 1024),
                  "graph_final": (1, 16, 14, 14, 2048)}


@pytest.mark.parametrize("kernel,strides,padding,unfold", [
    ((1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1)), 64),   # 2-D (branch2b)
    ((1, 1, 1), (1, 2, 2), ((0, 0), (0, 0), (0, 0)), 64),   # 2-D (branch1)
    ((3, 1, 1), (1, 1, 1), ((1, 1), (0, 0), (0, 0)), 64),   # (T, H*W) 2-D (branch2a)
    ((5, 7, 7), (1, 2, 2), ((2, 2), (3, 3), (3, 3)), 64),   # taps in channels (conv1)
    ((3, 3, 3), (2, 1, 2), ((1, 0), (1, 1), (0, 1)), 64),   # ... with temporal stride
    ((5, 7, 7), (1, 2, 2), ((2, 2), (3, 3), (3, 3)), 0),    # 3-D op
])
def test_video_conv_equals_a_3d_convolution(kernel, strides, padding, unfold):
  x = jax.random.normal(jax.random.key(0), (2, 5, 9, 8, 3))
  conv = VideoConv(4, kernel, strides=strides, padding=padding, use_bias=True,
                   bias_init=nn.initializers.normal(1.0), unfold_max_channels=unfold)
  v = fast_jit(conv.init)(jax.random.key(1, impl="rbg"), x)
  assert v["params"]["kernel"].shape == kernel + (3, 4)
  want = jax.lax.conv_general_dilated(
      x, v["params"]["kernel"], strides, padding,
      dimension_numbers=("NTHWC", "THWIO", "NTHWC")) + v["params"]["bias"]
  np.testing.assert_allclose(fast_jit(conv.apply)(v, x), want, rtol=1e-5, atol=1e-5)


def _nonlocal_reference(x, p, s, eps=1e-5):
  """NumPy embedded-Gaussian non-local block (spec §8.4), frozen-stat BN."""
  b, t, h, w, c = x.shape
  inner = c // 2
  lin = lambda z, q: z @ q["kernel"].reshape(q["kernel"].shape[-2:]) + q["bias"]
  pooled = x.reshape(b, t, h // 2, 2, w // 2, 2, c).max(axis=(3, 5))
  theta = lin(x, p["theta"]).reshape(b, -1, inner)
  phi = lin(pooled, p["phi"]).reshape(b, -1, inner)
  g = lin(pooled, p["g"]).reshape(b, -1, inner)
  logits = theta @ phi.transpose(0, 2, 1) / np.sqrt(inner)
  att = np.exp(logits - logits.max(-1, keepdims=True))
  att /= att.sum(-1, keepdims=True)
  y = lin((att @ g).reshape(b, t, h, w, inner), p["out"])
  y = (y - s["bn"]["mean"]) / np.sqrt(s["bn"]["var"] + eps) * p["bn"]["scale"] + p["bn"]["bias"]
  return x + y


def test_nonlocal_block_is_identity_at_init_and_matches_reference():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 4, 6, 8)).astype(np.float32)
  block = NonLocalBlock(norm=batch_norm.backbone_norm("frozen", train=True))
  variables = fast_jit(block.init)(jax.random.key(0, impl="rbg"), x)
  forward = fast_jit(block.apply)
  np.testing.assert_array_equal(forward(variables, x), x)

  randomise = lambda a: rng.normal(size=a.shape).astype(np.float32) * 0.5
  params = jax.tree_util.tree_map(randomise, variables["params"])
  stats = {"bn": {"mean": randomise(variables["batch_stats"]["bn"]["mean"]),
                  "var": np.abs(randomise(variables["batch_stats"]["bn"]["var"])) + 0.5}}
  got = forward({"params": params, "batch_stats": stats}, x)
  want = _nonlocal_reference(x, jax.tree_util.tree_map(np.asarray, params), stats)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_backbone_batch_norm_modes():
  """Frozen: statistics used and never written, even in training; 'train': updated
  with momentum 0.9 from the batch statistics."""
  x = jax.random.normal(jax.random.key(1), (2, 2, 32, 32, 3))
  kw = dict(backbone="c2d", stage_sizes=(1, 1, 1, 1), width=4)
  frozen = resnet_video.ResNetVideo(bn_mode="frozen", **kw)
  v = fast_jit(lambda x: frozen.init(jax.random.key(0, impl="rbg"), x, train=False))(x)
  _, upd = fast_jit(lambda v, x: frozen.apply(v, x, train=True, mutable=["batch_stats"]))(
      v, x)
  jax.tree_util.tree_map(np.testing.assert_array_equal, upd["batch_stats"],
                         v["batch_stats"])

  training = resnet_video.ResNetVideo(bn_mode="train", **kw)
  _, mutated = fast_jit(lambda v, x: training.apply(
      v, x, train=True, mutable=["batch_stats", "intermediates"],
      capture_intermediates=lambda mdl, _: mdl.name == "conv1"))(v, x)
  conv1_out = np.asarray(mutated["intermediates"]["conv1"]["__call__"][0])
  new = mutated["batch_stats"]["res_conv1_bn"]
  old = v["batch_stats"]["res_conv1_bn"]
  np.testing.assert_allclose(
      new["mean"], 0.9 * old["mean"] + 0.1 * conv1_out.mean(axis=(0, 1, 2, 3)),
      rtol=1e-5, atol=1e-6)
  assert not np.allclose(new["var"], old["var"])


def test_bad_settings_name_the_field():
  x = jnp.zeros((1, 2, 32, 32, 3))
  with pytest.raises(ValueError, match="place_graph"):
    resnet_video.ResNetVideo(place_graph=("res9",), graph=GraphConfig()).init(
        jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="needs a GraphConfig"):
    resnet_video.ResNetVideo(place_graph=("res3",)).init(
        jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="bn_mode"):
    batch_norm.backbone_norm("moving", train=True)
  with pytest.raises(ValueError, match=r"\[B, T, H, W, C\]"):
    resnet_video.ResNetVideo().init(jax.random.key(0), x[0], train=False)
