"""Something-Something / Kinetics classifiers: ResNet-50 video backbone + RSTG + head.

Composition (spec §7.4-§7.6): backbone (C2D / I3D / Non-Local, graphs optionally inside
res3 / res4) -> pool5 (average, window = the training clip's res5 extent, stride 1,
VALID: fully convolutional, so a 256-px clip gives 3x3 positions) -> [RSTG-to-vec at
`final`, added to every pool5 position ('plus') or replacing it ('serial')] ->
dropout -> `pred` (1x1x1 conv = dense) -> logits averaged over the output positions.

Parameter tree: `backbone/...` (see resnet_video.py; graphs `backbone/graph_res3`,
`backbone/graph_res4`), `graph_final`, `pred` (a Dense: kernel [C, K]; the original's
1x1x1 conv kernel [1, 1, 1, C, K] is the same array reshaped).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rstg_jax.models.backbones import resnet_video
from rstg_jax.models.graph.graph_block import RSTGBlock
from rstg_jax.models.graph.graph_config import GraphConfig

GRAPH_PLACES = resnet_video.GRAPH_STAGES + ("final",)
COMB_TYPES = ("plus", "serial")
# Pixel normalisation of the original Something-Something pipeline (spec §9.2).
SMT_INPUT_MEAN = 114.75
SMT_INPUT_STD = 57.375


class VideoClassifier(nn.Module):
  """Video [B, T, H, W, 3] -> logits [B, num_classes].

  An integer (uint8) video holds raw 0-255 pixels and is normalised here with
  (x - input_mean) / input_std; a float video is taken as already normalised (what
  `rstg_jax.data.smt_input` produces by default).

  Attributes:
    backbone: the ResNetVideo (holds any graphs/non-local blocks inside stages).
    num_classes: classifier width (174 for Something-Something v1).
    graph_final: a graph on the res5 map (RSTG-to-vec); needs `graph`.
    graph: settings of the `final` graph.
    final_norm: zero-initialised norm on the graph vector ('LN', 'BN', 'none').
    comb_type: 'plus' (Something-Something: graph vector added to the pooled
      backbone features) or 'serial' (replaces them).
    pool5_window: (t, h, w) of the pool5 average; None pools globally. A window
      larger than the map is clipped to it.
    dropout_rate: on the pooled features, training only (0.3 in the paper).
    input_mean, input_std: pixel normalisation of integer (raw) input.
    dtype: compute dtype of backbone and graphs; the head and logits are float32.
  """
  backbone: resnet_video.ResNetVideo
  num_classes: int = 174
  graph_final: bool = False
  graph: GraphConfig | None = None
  final_norm: str = "LN"
  comb_type: str = "plus"
  pool5_window: Sequence[int] | None = None
  dropout_rate: float = 0.3
  input_mean: float = SMT_INPUT_MEAN
  input_std: float = SMT_INPUT_STD
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video: jax.Array, *, train: bool) -> jax.Array:
    if video.ndim != 5:
      raise ValueError(f"video must be [B, T, H, W, C], got shape {video.shape}")
    if self.comb_type not in COMB_TYPES:
      raise ValueError(f"comb_type={self.comb_type!r}: must be one of {COMB_TYPES}")
    x = video.astype(jnp.float32)
    if jnp.issubdtype(video.dtype, jnp.integer):
      # Raw pixels (e.g. uint8 batches: 4x less host-to-device traffic).
      x = (x - self.input_mean) / self.input_std
    feats = self.backbone(x, train=train)["res5"]              # [B, T', H', W', C]
    pooled = _pool5(feats, self.pool5_window)                  # [B, t, h, w, C]
    if self.graph_final:
      if self.graph is None:
        raise ValueError("graph_final=True needs a GraphConfig (config.model.graph)")
      c = feats.shape[-1]
      vec = RSTGBlock(graph=self.graph, readout="vec",
                      project=c != self.graph.node_feat_dim,
                      residual_norm=self.final_norm, dtype=self.dtype,
                      name="graph_final")(feats, train=train)  # [B, C]
      vec = vec.astype(jnp.float32)[:, None, None, None, :]
      pooled = pooled + vec if self.comb_type == "plus" else jnp.broadcast_to(
          vec, pooled.shape)
    pooled = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.glorot_uniform(),
                      name="pred")(pooled)                     # [B, t, h, w, K]
    # Logits (not probabilities) are averaged over positions (spec §7.5).
    return jnp.mean(logits, axis=(1, 2, 3))


def _pool5(x: jax.Array, window: Sequence[int] | None) -> jax.Array:
  """Average pool, stride 1, VALID, in float32: [B, T, H, W, C] -> [B, t, h, w, C]."""
  x = x.astype(jnp.float32)
  if window is None:
    return jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  window = tuple(min(w, n) for w, n in zip(window, x.shape[1:4]))
  return nn.avg_pool(x, window, strides=(1, 1, 1), padding="VALID")


def parse_places(value: str | Sequence[str], allowed: Sequence[str],
                 field: str) -> tuple[str, ...]:
  """'res3-res4' / 'final' / 'none' / a sequence -> validated tuple of places."""
  if isinstance(value, str):
    value = () if value.lower() in ("", "none") else tuple(value.split("-"))
  if value == ("all",):
    return tuple(allowed)
  places = tuple(value)
  unknown = [p for p in places if p not in allowed]
  if unknown:
    raise ValueError(f"config.model.{field}={value!r}: unknown place(s) {unknown}; "
                     f"allowed: {tuple(allowed)}, joined by '-', or 'none'")
  return places


def build_model(model_config: Mapping[str, Any]) -> VideoClassifier:
  """Builds the classifier from `config.model` (configs/smt_common.py).

  Reads num_classes, backbone, stage_sizes, width, res5_stride, place_graph,
  place_nonlocal, graph (GraphConfig fields), final_norm, comb_type, bn_mode,
  remat_stages, pool5_window, classification_dropout, input_mean, input_std, dtype.
  """
  m = model_config
  place_graph = parse_places(m["place_graph"], GRAPH_PLACES, "place_graph")
  graph = GraphConfig.from_dict(dict(m["graph"])) if place_graph else None
  dtype = jnp.dtype(m["dtype"])
  backbone = resnet_video.ResNetVideo(
      backbone=m["backbone"],
      stage_sizes=tuple(m["stage_sizes"]),
      width=m["width"],
      res5_stride=m["res5_stride"],
      place_nonlocal=parse_places(m["place_nonlocal"], resnet_video.NONLOCAL_STAGES,
                                  "place_nonlocal"),
      place_graph=tuple(p for p in place_graph if p != "final"),
      graph=graph,
      graph_residual_norm=m["final_norm"],
      bn_mode=m["bn_mode"],
      remat_stages=parse_places(m["remat_stages"], resnet_video.STAGES,
                                "remat_stages"),
      dtype=dtype)
  window = m["pool5_window"]
  return VideoClassifier(
      backbone=backbone,
      num_classes=m["num_classes"],
      graph_final="final" in place_graph,
      graph=graph,
      final_norm=m["final_norm"],
      comb_type=m["comb_type"],
      pool5_window=None if window is None else tuple(window),
      dropout_rate=m["classification_dropout"],
      input_mean=m["input_mean"],
      input_std=m["input_std"],
      dtype=dtype)
