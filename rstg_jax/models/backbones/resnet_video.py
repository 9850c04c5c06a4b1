"""ResNet-50 for video: C2D and I3D (spec §8.2-§8.4), with named stage endpoints.

One network family with a per-block temporal-kernel pattern: C2D has every temporal
kernel 1; I3D inflates conv1 to 5x7x7 and the first 1x1 conv of selected bottlenecks to
3x1x1. Both keep the temporal max-pool after res2 (T halves: 32 -> 16) and use stride 1
in res5 (14x14 final map at 224 px). Non-Local blocks (spec §8.4) and RSTG-to-map graphs
(spec §7.3-§7.6) are inserted inside stages by configuration.

Parameter names follow the original (and Caffe2 video-nonlocal-net) blob names: the
original's name of a variable is its Flax module path below `backbone` joined by '_':
`conv1`, `res_conv1_bn`, `res2_0/branch2a` -> `res2_0_branch2a`,
`res3_0/branch1_bn` -> `res3_0_branch1_bn`, `nonlocal_conv3_1/theta` ->
`nonlocal_conv3_1_theta`. BatchNorm `scale`/`bias`/`mean`/`var` are TF's
`gamma`/`beta`/`moving_mean`/`moving_variance`. Graphs inside the backbone are
`graph_res3`, `graph_res4` (the original's `whole_graph_model_res3`, ...).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rstg_jax.models.backbones.batch_norm import backbone_norm
from rstg_jax.models.backbones.nonlocal_block import NonLocalBlock
from rstg_jax.models.backbones.video_conv import VideoConv
from rstg_jax.models.graph.graph_block import RSTGBlock
from rstg_jax.models.graph.graph_config import GraphConfig

STAGES = ("res2", "res3", "res4", "res5")
BACKBONES = ("c2d", "i3d")
# Stages the original can hold graphs / non-local blocks in (spec §7.6, §8.4).
GRAPH_STAGES = STAGES
NONLOCAL_STAGES = STAGES
RESNET50_STAGE_SIZES = (3, 4, 6, 3)

# Caffe2's MSRA fill; only matters when a backbone is trained from scratch, since the
# paper's backbones come from Kinetics checkpoints.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def inflate_pattern(backbone: str, stage_sizes: Sequence[int]
                    ) -> tuple[tuple[int, ...], ...]:
  """Per-block temporal inflation flags (1: branch2a is 3x1x1) for each stage.

  I3D-R50 (spec §8.2): res2 [1, 1, 1], res3 [1, 0, 1, 0], res4 [1, 0, 1, 0, 1, 0],
  res5 [0, 1, 0]; the same alternation extends to other depths. C2D: all 0.
  """
  if backbone not in BACKBONES:
    raise ValueError(f"backbone={backbone!r}: must be one of {BACKBONES}")
  if len(stage_sizes) != len(STAGES):
    raise ValueError(f"stage_sizes={tuple(stage_sizes)}: need {len(STAGES)} stages")
  if backbone == "c2d":
    return tuple((0,) * n for n in stage_sizes)
  rules = (lambda i: 1, lambda i: int(i % 2 == 0), lambda i: int(i % 2 == 0),
           lambda i: int(i % 2 == 1))
  return tuple(tuple(rule(i) for i in range(n)) for rule, n in zip(rules, stage_sizes))


def graph_block_index(stage_size: int) -> int:
  """Block after which a graph is inserted: the second-to-last (spec §7.6, §14.8)."""
  return stage_size - 2


def nonlocal_block_indices(stage_size: int) -> tuple[int, ...]:
  """Blocks followed by a Non-Local block: odd indices (res3_1, res3_3, res4_1, ...)."""
  return tuple(i for i in range(stage_size) if i % 2 == 1)


class Bottleneck(nn.Module):
  """ResNet bottleneck with an optional temporal kernel on its first 1x1 conv.

  Attributes:
    inner: width of the 1x1 / 3x3 convs.
    out: output width.
    stride: spatial stride, on the 3x3 conv (and the projection shortcut).
    temporal_kernel: 1 (C2D) or 3 (an inflated I3D block).
    norm: BatchNorm factory.
    dtype: compute dtype.
  """
  inner: int
  out: int
  stride: int
  temporal_kernel: int
  norm: Callable[..., nn.Module]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, H, W, Cin] -> [B, T, H', W', out]."""
    conv = functools.partial(VideoConv, kernel_init=_CONV_INIT, dtype=self.dtype)
    kt, s = self.temporal_kernel, self.stride
    y = conv(self.inner, (kt, 1, 1), padding=((kt // 2, kt // 2), (0, 0), (0, 0)),
             name="branch2a")(x)
    y = nn.relu(self.norm(name="branch2a_bn")(y))
    y = conv(self.inner, (1, 3, 3), strides=(1, s, s),
             padding=((0, 0), (1, 1), (1, 1)), name="branch2b")(y)
    y = nn.relu(self.norm(name="branch2b_bn")(y))
    y = conv(self.out, (1, 1, 1), name="branch2c")(y)
    y = self.norm(name="branch2c_bn")(y)
    shortcut = x
    if x.shape[-1] != self.out or s != 1:
      shortcut = conv(self.out, (1, 1, 1), strides=(1, s, s), name="branch1")(x)
      shortcut = self.norm(name="branch1_bn")(shortcut)
    return nn.relu(y + shortcut)


# Rematerialised variants: same parameter tree, activations recomputed in the backward
# pass so that only block inputs are stored.
_RematBottleneck = nn.remat(Bottleneck)
_RematNonLocalBlock = nn.remat(NonLocalBlock)


class ResNetVideo(nn.Module):
  """ResNet-50-style video backbone returning named endpoints.

  Input [B, T, H, W, 3]; endpoints (shapes for I3D at 32x224x224):
  conv1 [B, 32, 112, 112, 64], pool1 [B, 32, 55, 55, 64], res2 [B, 32, 55, 55, 256],
  pool2 [B, 16, 55, 55, 256], res3 [B, 16, 28, 28, 512], res4 [B, 16, 14, 14, 1024],
  res5 [B, 16, 14, 14, 2048].

  Attributes:
    backbone: 'c2d' or 'i3d' (selects conv1's temporal kernel and the inflation).
    stage_sizes: blocks per stage (res2..res5); (3, 4, 6, 3) is ResNet-50.
    width: res2 inner width; stage r has inner width * 2**(r-2) and 4x that out.
    temporal_pool2: temporal window/stride of the max-pool after res2.
    res5_stride: spatial stride of res5 (1 in the original TF port, 2 in Caffe2).
    place_nonlocal: stages holding Non-Local blocks after their odd blocks.
    place_graph: stages holding an RSTG-to-map graph after their second-to-last block.
    graph: settings of those graphs (each placement has its own parameters).
    graph_residual_norm: the zero-initialised norm on each graph branch ('LN', 'BN').
    bn_mode: 'frozen' (original) or 'train'; see `batch_norm`.
    remat_stages: stages whose blocks are rematerialised in the backward pass.
    dtype: compute dtype; parameters stay float32.
  """
  backbone: str = "i3d"
  stage_sizes: Sequence[int] = RESNET50_STAGE_SIZES
  width: int = 64
  temporal_pool2: int = 2
  res5_stride: int = 1
  place_nonlocal: Sequence[str] = ()
  place_graph: Sequence[str] = ()
  graph: GraphConfig | None = None
  graph_residual_norm: str = "LN"
  bn_mode: str = "frozen"
  remat_stages: Sequence[str] = ()
  dtype: Any = jnp.float32

  def _check(self):
    def bad(field, msg):
      raise ValueError(f"ResNetVideo.{field}={getattr(self, field)!r}: {msg}")

    inflate_pattern(self.backbone, self.stage_sizes)  # validates both
    if any(n < 1 for n in self.stage_sizes):
      bad("stage_sizes", "every stage needs at least one block")
    for field, allowed in (("place_nonlocal", NONLOCAL_STAGES),
                           ("place_graph", GRAPH_STAGES), ("remat_stages", STAGES)):
      unknown = set(getattr(self, field)) - set(allowed)
      if unknown:
        bad(field, f"unknown stage(s) {sorted(unknown)}; allowed {allowed}")
    if self.place_graph and self.graph is None:
      bad("graph", f"place_graph={tuple(self.place_graph)} needs a GraphConfig")
    for stage in self.place_graph:
      if self.stage_sizes[STAGES.index(stage)] < 2:
        bad("stage_sizes", f"a graph in {stage} is placed after the second-to-last "
            "block, so that stage needs >= 2 blocks")

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """x: [B, T, H, W, 3] float -> dict of endpoints (see class docstring)."""
    self._check()
    if x.ndim != 5:
      raise ValueError(f"ResNetVideo input must be [B, T, H, W, C], got {x.shape}")
    norm = backbone_norm(self.bn_mode, train, self.dtype)
    inflate = inflate_pattern(self.backbone, self.stage_sizes)
    x = x.astype(self.dtype)
    ends = {}

    kt = 5 if self.backbone == "i3d" else 1
    x = VideoConv(self.width, (kt, 7, 7), strides=(1, 2, 2),
                  padding=((kt // 2, kt // 2), (3, 3), (3, 3)), kernel_init=_CONV_INIT,
                  dtype=self.dtype, name="conv1")(x)
    x = nn.relu(norm(name="res_conv1_bn")(x))
    ends["conv1"] = x
    x = nn.max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding="VALID")
    ends["pool1"] = x

    for si, stage in enumerate(STAGES):
      remat = stage in self.remat_stages
      block_cls = _RematBottleneck if remat else Bottleneck
      nl_cls = _RematNonLocalBlock if remat else NonLocalBlock
      inner = self.width * 2 ** si
      stride = 1 if si == 0 else (self.res5_stride if stage == "res5" else 2)
      n = self.stage_sizes[si]
      for b in range(n):
        x = block_cls(inner=inner, out=4 * inner, stride=stride if b == 0 else 1,
                      temporal_kernel=3 if inflate[si][b] else 1, norm=norm,
                      dtype=self.dtype, name=f"{stage}_{b}")(x)
        if stage in self.place_nonlocal and b in nonlocal_block_indices(n):
          x = nl_cls(norm=norm, dtype=self.dtype,
                     name=f"nonlocal_conv{stage[3:]}_{b}")(x)
        if stage in self.place_graph and b == graph_block_index(n):
          x = x + self._graph(stage, x, train)
      ends[stage] = x
      if stage == "res2":
        p = self.temporal_pool2
        x = nn.max_pool(x, (p, 1, 1), strides=(p, 1, 1), padding="VALID")
        ends["pool2"] = x
    return ends

  def _graph(self, stage: str, x: jax.Array, train: bool) -> jax.Array:
    """The RSTG-to-map branch at `stage` (zero at initialisation), [B, T, H, W, C]."""
    # Project to the graph width only where the channels differ: reproduces the
    # original's table (res3 512: none; res4 1024 <-> 512; spec §7.6).
    project = x.shape[-1] != self.graph.node_feat_dim
    y = RSTGBlock(graph=self.graph, readout="map", project=project,
                  residual_norm=self.graph_residual_norm, dtype=self.dtype,
                  name=f"graph_{stage}")(x, train=train)
    return y.astype(x.dtype)


def feature_map_size(image_size: int, res5_stride: int = 1) -> int:
  """Side of the res5 map for a square input (224 -> 14, 256 -> 16; spec §8.2)."""
  s = (image_size + 2 * 3 - 7) // 2 + 1  # conv1, pad 3, stride 2
  s = (s - 3) // 2 + 1                   # pool1 3x3, stride 2, VALID
  for stride in (2, 2, res5_stride):     # res3, res4, res5 (3x3, pad 1)
    s = (s + 2 - 3) // stride + 1
  return s
