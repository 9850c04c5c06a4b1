"""Settings of one RSTG graph, validated once, with the original config key names.

Field names mirror the original YAML keys where they exist (`num_process_iter`,
`num_scales`, `use_att`, `scalewise_update`, `use_norm`, ...); the rest are options the
original lacks (named, with the paper's behaviour as the default).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

ATTENTION_MODES = ("dot", "simple", "none")
ADJACENCY_MODES = ("reference", "masked")
NORMS = ("LN", "BN", "none")
NORM_SCOPES = ("clip", "per_frame")
SCAN_MODES = ("fused", "k_pass")
TIME_ITER_MODES = ("original", "all")
# Which stages run (the paper's ablations, §5.1): both, or one of the two.
STAGES = ("space_time", "space", "time")
NODE_POOLINGS = ("mean", "moments")
# Parts whose matmuls may take bfloat16 inputs under a bfloat16 model dtype (`bf16_parts`).
BF16_PARTS = ("messages", "pairs", "update", "lstm", "attention", "projections")
# The original's `time_iter_mom` (spec §6.2): the iterations that run the time stage.
ORIGINAL_TIME_ITERS = (0, 1, 2)


@dataclasses.dataclass(frozen=True)
class GraphConfig:
  """One RSTG graph (spec §2-§7).

  Attributes:
    num_process_iter: K, the number of (time stage, space stage) iterations.
    time_iters: which iterations run the time stage (the internal LSTM) before their
      space stage. 'original' follows the original's `time_iter_mom = [0, 1, 2]`
      (spec §6.2): for K <= 3 every iteration, for K > 3 iterations 3.. are space
      stages only. 'all' runs it in every iteration (one more LSTM state per extra
      iteration); it differs from the original only when K > 3.
    num_scales: grid scales s = num_scales..1; 3 gives the paper's 14 nodes.
    node_feat_dim: D, node state width; equals the LSTM units.
    message_dims: M, message width; the original requires M == D.
    use_att: 'dot' (Something-Something), 'simple' (GAT-like, SyncMNIST) or 'none'
      (mean over senders; the original crashes on it).
    adjacency: 'reference' multiplies the adjacency into the attention logits as the
      original does (non-neighbours and self keep logit 0); 'masked' restricts the
      softmax to true neighbours.
    scalewise_update: separate node-update MLPs per scale (Something-Something).
    use_norm: 'LN' (TF-contrib semantics, eps 1e-12), 'BN' or 'none'.
    norm_scope: 'clip' is the original: the pre-graph LN spans the whole clip
      (T, N, D), which is not causal. 'per_frame' normalises each frame over (N, D),
      which makes the graph causal and streamable.
    use_positional_emb: concatenate the 36-d Gaussian node embedding to the message
      MLP input (SyncMNIST).
    dim_map: side of the positional map (embedding size dim_map**2).
    update_layers: depth of the node-update MLP.
    pre_graph_bn: the SyncMNIST BatchNorm on the node features before the graph.
    image_dim: input image side in pixels, used for the region boxes (spec §2.2).
    scan: how a whole clip is computed; both give the same outputs from the same
      parameters. 'fused' runs one scan over time carrying the K+1 LSTM states (spec
      §6.3), the form that streams. 'k_pass' runs the K full-sequence LSTM passes with the
      space stage on all frames at once between them: larger matmuls, measured faster
      for training (experiments/bench_graph.py), hence the default. Streaming always
      uses the fused step.
    remat: recompute in the backward pass instead of storing (saves memory): each
      scan step ('fused') or, in 'k_pass', the space stage frame by frame inside a scan
      (the whole-clip stage with message BatchNorm), see RSTGCell.
    unroll: scan unroll factor passed to XLA (a speed knob; outputs are unchanged).
    lstm_vjp: in 'k_pass' without remat, the LSTMs' backward pass is the hand-written
      one of models/graph/lstm_recurrence.py: their recurrent-weight gradient becomes
      one matmul over the whole sequence instead of one small matmul per time step.
      Same results up to float rounding; False is JAX's derivative of the scan.
    pair_rewrite: compute the space stage's gather without writing the normalised
      [.., N, N, M] message tensor: the message LayerNorm's per-channel affine map
      commutes with the attention-weighted sum over senders, so it is applied after the
      aggregation with the pair tensor's statistics, and the aggregation is a fused
      multiply-sum (SpaceStage). Same results up to float rounding; False is the
      literal form (LN on every pair, then the gather), kept for tests and A/B timings.
      BN message norms always take the literal form.
    wavefront: in 'fused' over a whole clip, run the scan on a skewed schedule: step s
      runs iteration k on frame s - k for every k at once, so the K iterations share
      one LSTM call and one space-stage call of K times the rows (their parameters
      are shared), and the scan has T + K - 1 steps of one batched iteration instead
      of T steps of K sequential ones. The first and last K - 1 steps (not every
      iteration has a frame yet / still) run outside the scan with only the busy
      iterations, so no work is wasted. Same results up to float rounding; False is
      the step-by-step scan. Streaming, message BatchNorm and runs that collect the
      'intermediates' (tools/explain) always take the step-by-step scan.
    stages: 'space_time' (the model); the paper's ablations: 'space' drops every
      LSTM (internal and external: nodes see one frame at a time), 'time' drops the
      space stage (nodes never exchange messages).
    node_pooling: how RSTGBlock makes node features from the map: 'mean' (the
      original's area means) or 'moments', which appends the row and column moments
      inside each node's region (area_resize.pool_to_nodes; the block then needs its
      projections, as the node width triples).
    space_residual: add the space stage's output to its input (z + space(z))
      instead of replacing the node states with it (the original). Not in the
      paper: on the CPU SyncMNIST setting the replacing update lost what the
      LSTMs had found (experiments/syncmnist/README.md).
    bf16_parts: under a bfloat16 model `dtype`, the parts whose matmuls take bfloat16
      inputs (accumulating in float32), joined by '-' ('all', 'none'): 'messages' (the
      two message layers, the bulk of the FLOPs), 'pairs' (the [.., N, N, M] message
      tensor is stored in bfloat16), 'update' (node-update MLP), 'lstm' (both LSTM
      matmuls), 'attention' (query/key layers and logits), 'projections' (the C <-> D
      maps). Everything else (parameters, node and LSTM states, norms, softmax) stays
      float32 (rstg_jax/models/graph/precision.py). The default, the message layers only, had
      the smallest gradient error and the best speed of the choices measured by
      experiments/graph_grad_error.py --study (README). No effect under float32.
  """

  num_process_iter: int = 3
  time_iters: str = "original"
  num_scales: int = 3
  node_feat_dim: int = 512
  message_dims: int = 512
  use_att: str = "dot"
  adjacency: str = "reference"
  scalewise_update: bool = True
  use_norm: str = "LN"
  norm_scope: str = "clip"
  use_positional_emb: bool = False
  dim_map: int = 6
  update_layers: int = 2
  pre_graph_bn: bool = False
  image_dim: int = 224
  scan: str = "k_pass"
  remat: bool = False
  unroll: int = 1
  lstm_vjp: bool = True
  pair_rewrite: bool = True
  wavefront: bool = True
  stages: str = "space_time"
  node_pooling: str = "mean"
  space_residual: bool = False
  bf16_parts: str = "messages"

  def __post_init__(self):
    def check(ok: bool, field: str, msg: str):
      if not ok:
        raise ValueError(
            f"GraphConfig.{field}={getattr(self, field)!r}: {msg}")

    check(self.use_att in ATTENTION_MODES, "use_att", f"must be one of {ATTENTION_MODES}")
    check(self.adjacency in ADJACENCY_MODES, "adjacency",
          f"must be one of {ADJACENCY_MODES}")
    check(self.use_norm in NORMS, "use_norm", f"must be one of {NORMS}")
    check(self.norm_scope in NORM_SCOPES, "norm_scope", f"must be one of {NORM_SCOPES}")
    check(self.time_iters in TIME_ITER_MODES, "time_iters",
          f"must be one of {TIME_ITER_MODES}")
    check(self.scan in SCAN_MODES, "scan", f"must be one of {SCAN_MODES}")
    check(self.stages in STAGES, "stages", f"must be one of {STAGES}")
    check(self.node_pooling in NODE_POOLINGS, "node_pooling",
          f"must be one of {NODE_POOLINGS}")
    check(self.num_process_iter >= 1, "num_process_iter", "must be >= 1")
    check(1 <= self.num_scales <= self.dim_map, "num_scales",
          f"must be in [1, dim_map={self.dim_map}]")
    check(self.node_feat_dim >= 1, "node_feat_dim", "must be >= 1")
    check(self.update_layers >= 1, "update_layers", "must be >= 1")
    check(self.unroll >= 1, "unroll", "must be >= 1")
    check(set(self.bf16_part_set) <= set(BF16_PARTS), "bf16_parts",
          f"must be parts of {BF16_PARTS} joined by '-', 'all' or 'none'")
    # The original feeds messages and node states through the same LSTM (spec §4).
    check(self.message_dims == self.node_feat_dim, "message_dims",
          f"must equal node_feat_dim={self.node_feat_dim} (node states, messages "
          "and LSTM units share one width)")

  @property
  def time_stage_iters(self) -> tuple[int, ...]:
    """The iterations k (0-based) whose space stage is preceded by the internal LSTM."""
    k = range(self.num_process_iter)
    if not self.use_time:
      return ()
    if self.time_iters == "all":
      return tuple(k)
    return tuple(i for i in k if i in ORIGINAL_TIME_ITERS)

  @property
  def use_time(self) -> bool:
    """Whether the LSTMs (internal and external) run (not for stages='space')."""
    return self.stages != "space"

  @property
  def use_space(self) -> bool:
    """Whether the space stage runs (not for stages='time')."""
    return self.stages != "time"

  @property
  def bf16_part_set(self) -> tuple[str, ...]:
    """`bf16_parts` as a tuple of part names."""
    value = self.bf16_parts.lower()
    if value == "all":
      return BF16_PARTS
    return () if value in ("", "none") else tuple(value.split("-"))

  @property
  def scales(self) -> tuple[int, ...]:
    return tuple(range(self.num_scales, 0, -1))

  @property
  def num_nodes(self) -> int:
    return sum(s * s for s in self.scales)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "GraphConfig":
    """Builds from a mapping (e.g. an ml_collections ConfigDict); unknown keys fail."""
    d = dict(d)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(
          f"unknown graph config key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**d)
