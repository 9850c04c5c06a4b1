"""SyncMNIST classifiers: SimpleConv + (RSTG | mean | LSTM) head + dense.

`head` selects the part between backbone and classifier:
  - 'rstg': the paper's model (spec §7.5, §8.1): the RSTG graph at `final`
    with `serial` combination: the graph vector (RSTG-to-vec) replaces the
    backbone output. No residual norm on this path (spec §7.4).
    Option `combine='plus'` (not in the original's SyncMNIST code, where it
    crashes) adds the graph vector to the 'mean' baseline's vector instead,
    as the Something-Something models do; with `residual_norm` 'LN' or 'BN'
    the graph branch is zero at initialisation, so the model starts as the
    mean baseline and the graph only has to learn what the baseline lacks.
  - 'mean': no graph; the backbone map averaged over space and time.
  - 'lstm': no graph; an LSTM over per-frame spatially averaged features,
    read out at the last step or averaged over time.
  - 'convlstm': no graph; a convolutional LSTM over the backbone map (3x3
    kernels, so it keeps where things are), its last output averaged over space.
  - 'nonlocal': no graph; one embedded-Gaussian space-time Non-Local block
    (Wang et al. 2018, the paper's Non-Local baseline, spec §8.4) on the
    backbone map, every position attending to every position of every frame,
    then the 'mean' head. Its zero-initialised BatchNorm makes it start as the
    mean head; configs put it on the 3-D-convolution backbone (I3D + Non-Local,
    as the paper's baseline).
The 'mean' and 'lstm' baselines cannot tell which digits move together except
through what a per-frame pooled vector keeps of positions, which is the point of
the comparison; 'convlstm', 'nonlocal', and any head on the 3-D-convolution backbone
(`backbone_temporal_kernel` 3), see motion.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from rstg_jax.models.backbones.batch_norm import backbone_norm
from rstg_jax.models.backbones.nonlocal_block import NonLocalBlock
from rstg_jax.models.backbones.simple_conv import SimpleConv
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.norms import tf_batch_norm

HEADS = ("rstg", "mean", "lstm", "convlstm", "nonlocal")
COMBINES = ("serial", "plus")
LSTM_READOUTS = ("last", "mean")


class SyncMNISTClassifier(nn.Module):
  """SimpleConv -> head -> dropout -> Dense(num_classes) named `pred`.

  Attributes:
    head: 'rstg' | 'mean' | 'lstm' | 'convlstm' | 'nonlocal'.
    num_classes: 46 for SyncMNIST (spec §9.4).
    backbone_width: SimpleConv filters.
    backbone_stages: SimpleConv conv/pool stages (3: 64x64 -> 6x6).
    backbone_temporal_kernel: SimpleConv temporal kernel (1: 2-D, the paper).
    input_scale: SimpleConv's pixel factor (1.0, raw 0-255, in the paper).
    graph: settings of the RSTG graph (head 'rstg' only). When its
      node_feat_dim differs from backbone_width, dense projections map
      backbone -> graph width and back (RSTGBlock.project).
    combine: 'serial' (the paper's SyncMNIST model) or 'plus' (head 'rstg').
    residual_norm: norm of the graph branch, 'none' (the paper's SyncMNIST),
      'LN' or 'BN' (zero at initialisation; see RSTGBlock).
    lstm_units: LSTM width (heads 'lstm' and 'convlstm').
    lstm_readout: 'last' output or 'mean' over time (head 'lstm').
    baseline_bn: BatchNorm on the pooled features of the baselines (and of the
      backbone vector of combine='plus'), before the LSTM or the classifier: the counterpart of the graph's pre-graph
      BatchNorm. SimpleConv sees raw 0-255 pixels, so without it the pooled
      features are in the thousands, saturate the LSTM gates and start the
      classifier with huge logits.
    dropout_rate: on the pooled features (0 in the paper's SyncMNIST config).
    dtype: compute dtype.
  """

  head: str = "rstg"
  num_classes: int = 46
  backbone_width: int = 512
  backbone_stages: int = 3
  backbone_temporal_kernel: int = 1
  input_scale: float = 1.0
  graph: GraphConfig | None = None
  combine: str = "serial"
  residual_norm: str = "none"
  lstm_units: int = 512
  lstm_readout: str = "last"
  baseline_bn: bool = True
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Maps a video [B, T, H, W, 1] (0-255, any dtype) to logits [B, num_classes]."""
    if self.head not in HEADS:
      raise ValueError(f"model head {self.head!r} is not one of {HEADS}")
    fmap = SimpleConv(width=self.backbone_width, num_stages=self.backbone_stages,
                      temporal_kernel=self.backbone_temporal_kernel,
                      input_scale=self.input_scale,
                      dtype=self.dtype, name="backbone")(video)  # [B, T, h, w, W]
    if self.head == "rstg":
      if self.graph is None:
        raise ValueError("head 'rstg' needs a GraphConfig (config.graph)")
      # Imported here so the baselines work without the graph modules.
      if self.combine not in COMBINES:
        raise ValueError(f"combine {self.combine!r} is not one of {COMBINES}")
      from rstg_jax.models.graph.graph_block import RSTGBlock  # pylint: disable=g-import-not-at-top
      feats = RSTGBlock(
          graph=self.graph, readout="vec",
          project=self.graph.node_feat_dim != self.backbone_width,
          residual_norm=self.residual_norm, dtype=self.dtype, name="graph")(
              fmap, train=train)                                 # [B, W]
      if self.combine == "plus":
        feats = feats + self._norm(jnp.mean(fmap, axis=(1, 2, 3)), train)
    elif self.head in ("mean", "nonlocal"):
      if self.head == "nonlocal":
        fmap = NonLocalBlock(norm=backbone_norm("train", train, self.dtype),
                             dtype=self.dtype, name="nonlocal")(fmap)  # [B, T, h, w, W]
      feats = self._norm(jnp.mean(fmap, axis=(1, 2, 3)), train)  # [B, W]
    elif self.head == "convlstm":
      maps = self._norm(fmap, train)                             # [B, T, h, w, W]
      outs = nn.RNN(nn.ConvLSTMCell(self.lstm_units, (3, 3), dtype=self.dtype,
                                    name="convlstm_cell"),
                    name="convlstm")(maps)                       # [B, T, h, w, U]
      feats = jnp.mean(outs[:, -1], axis=(1, 2))                 # [B, U]
    else:
      if self.lstm_readout not in LSTM_READOUTS:
        raise ValueError(
            f"lstm_readout {self.lstm_readout!r} is not one of {LSTM_READOUTS}")
      frames = self._norm(jnp.mean(fmap, axis=(2, 3)), train)    # [B, T, W]
      outs = nn.RNN(nn.OptimizedLSTMCell(self.lstm_units, dtype=self.dtype,
                                         name="lstm_cell"),
                    name="lstm")(frames)                         # [B, T, U]
      feats = outs[:, -1] if self.lstm_readout == "last" else jnp.mean(outs, 1)
    feats = nn.Dropout(self.dropout_rate, deterministic=not train)(feats)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="pred")(feats)
    return logits.astype(jnp.float32)

  def _norm(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if not self.baseline_bn:
      return x
    # Same settings as the graph's pre-graph BatchNorm (TF defaults).
    return tf_batch_norm("baseline_bn", train, self.dtype)(x)


def build_model(model_config: Mapping[str, Any]) -> SyncMNISTClassifier:
  """Builds the classifier from `config.model` (see configs/syncmnist_common.py).

  Reads `head`, `num_classes`, `backbone.width`, `backbone.num_stages` (default
  3), `backbone.temporal_kernel` (default 1), `backbone.input_scale`
  (default 1.0), `graph` (a mapping of GraphConfig fields), `combine`,
  `residual_norm`, `lstm.units`, `lstm.readout`, `baseline_bn`, `dropout_rate`,
  `dtype`.
  """
  m = model_config
  head = m["head"]
  if head not in HEADS:
    raise ValueError(f"config.model.head={head!r} is not one of {HEADS}")
  graph = GraphConfig.from_dict(dict(m["graph"])) if head == "rstg" else None
  return SyncMNISTClassifier(
      head=head,
      num_classes=m["num_classes"],
      backbone_width=m["backbone"]["width"],
      backbone_stages=m["backbone"].get("num_stages", 3),
      backbone_temporal_kernel=m["backbone"].get("temporal_kernel", 1),
      input_scale=m["backbone"].get("input_scale", 1.0),
      graph=graph,
      combine=m["combine"],
      residual_norm=m["residual_norm"],
      lstm_units=m["lstm"]["units"],
      lstm_readout=m["lstm"]["readout"],
      baseline_bn=m["baseline_bn"],
      dropout_rate=m["dropout_rate"],
      dtype=jnp.dtype(m["dtype"]),
  )
