"""The RSTG graph on node features: pre-graph processing, the recurrence, projections.

The recurrence of spec §6.2 is K iterations of (internal LSTM over the whole sequence,
space stage per frame) followed by an external LSTM. Because every quantity at
(iteration k, time t) depends only on (k-1, t) and (k, t-1), it equals ONE scan over time
whose carry holds the K+1 LSTM states (spec §6.3): `scan='fused'`. That is the form
that streams, one frame at a time. `scan='k_pass'` runs the K passes literally; both
use the same parameters.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from rstg_jax.models.graph import precision
from rstg_jax.models.graph import time_stage
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.norms import make_norm, tf_batch_norm
from rstg_jax.models.graph.space_stage import SpaceStage, dense

# One internal state per iteration that runs the time stage, then the external one.
Carry = tuple[time_stage.LSTMState, ...]


class RSTGCell(nn.Module):
  """The parameters of the recurrence and its two schedules.

  `lstm_int` is shared by the K iterations (each its own state), `space` by all
  iterations and frames, `lstm_ext` is separate.
  """
  config: GraphConfig
  dtype: Any = jnp.float32

  def setup(self):
    d = self.config.node_feat_dim
    lstm_dtype = precision.part_dtype(self.config.bf16_part_set, "lstm", self.dtype)
    self.lstm_int = time_stage.lstm_cell(d, "lstm_int", lstm_dtype)
    # In the K-pass form the space stage's [B, T, N, N, M] messages dominate memory;
    # remat recomputes them in the backward pass (the fused form remats whole steps).
    # Rematerialising the whole-clip stage did not shrink XLA's temporaries on CPU: the
    # recomputation depends only on the stage input, so the scheduler is free to run
    # it (and hold all K stages' pair tensors) long before the cotangent arrives. Per
    # frame inside a scan (`_space_per_frame`) the recomputation is pinned to its
    # backward loop iteration. Message BatchNorm needs the whole clip's statistics.
    space = SpaceStage
    if self._whole_clip_remat:
      space = nn.remat(SpaceStage, static_argnums=(2,))
    self.space = space(self.config, dtype=self.dtype, name="space")
    self.lstm_ext = time_stage.lstm_cell(d, "lstm_ext", lstm_dtype)

  def __call__(self, carry: Carry, z: jnp.ndarray, train: bool = False):
    """One time step: z [B, N, D] -> (carry, o [B, N, D])."""
    cfg = self.config
    new = []
    for k in range(cfg.num_process_iter):
      if k in cfg.time_stage_iters:
        state, z = self.lstm_int(carry[len(new)], z)
        new.append(state)
      if cfg.use_space:
        z = self._after_space(z, self.space(z, train))
      self.sow("intermediates", "node_out", z)  # each iteration's node states; explain
    if not cfg.use_time:
      return tuple(new), z
    state, o = self.lstm_ext(carry[-1], z)
    new.append(state)
    return tuple(new), o

  def _after_space(self, z: jnp.ndarray, out: jnp.ndarray) -> jnp.ndarray:
    """The node states after a space stage: its output, or z + it (space_residual)."""
    return z + out if self.config.space_residual else out

  @property
  def _whole_clip_remat(self) -> bool:
    cfg = self.config
    return cfg.remat and cfg.scan == "k_pass" and cfg.use_norm == "BN"

  def _space_per_frame(self, zs: jnp.ndarray, train: bool) -> jnp.ndarray:
    """The space stage rematerialised frame by frame: zs [B, T, N, D] -> [B, T, N, D].

    The same outputs as `self.space(zs)` (frames are independent without BatchNorm); the
    backward pass recomputes one frame's [B, N, N, M] messages at a time.
    """
    def body(space, carry, z_t):
      return carry, space(z_t, train)

    # What the space stage sows (attention, for explain) is stacked over frames,
    # as the un-rematerialised stage gives it; without variable_axes it is dropped.
    scan = nn.scan(nn.remat(body), variable_broadcast="params",
                   variable_axes={"intermediates": 1}, split_rngs={"params": False},
                   in_axes=1, out_axes=1, unroll=self.config.unroll)
    _, out = scan(self.space, None, zs)
    return out

  def k_pass(self, zs: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """The literal schedule: zs [B, T, N, D] -> [B, T, N, D]."""
    cfg = self.config
    unroll = cfg.unroll
    per_frame = cfg.remat and not self._whole_clip_remat
    for k in range(cfg.num_process_iter):
      if k in cfg.time_stage_iters:
        zs = time_stage.run_lstm(self.lstm_int, zs, unroll, cfg.remat, cfg.lstm_vjp)
      if cfg.use_space:
        zs = self._after_space(
            zs, self._space_per_frame(zs, train) if per_frame else self.space(zs, train))
      self.sow("intermediates", "node_out", zs)
    if not cfg.use_time:
      return zs
    return time_stage.run_lstm(self.lstm_ext, zs, unroll, cfg.remat, cfg.lstm_vjp)


def initial_carry(config: GraphConfig, batch_size: int, dtype: Any = jnp.float32) -> Carry:
  """Zero states for streaming: one LSTM (c, h) pair, each [B, N, D], per iteration
  that runs the time stage (`config.time_stage_iters`), then the external one (none
  for stages='space')."""
  return tuple(
      time_stage.zero_state((batch_size, config.num_nodes), config.node_feat_dim, dtype)
      for _ in range(len(config.time_stage_iters) + int(config.use_time)))


def not_streamable_reason(config: GraphConfig, train: bool = False) -> str | None:
  """None if frames can be fed one at a time, else the reason why not."""
  if config.use_norm == "LN" and config.norm_scope == "clip":
    return ("the pre-graph LayerNorm spans the whole clip (norm_scope='clip', as the "
            "original); use norm_scope='per_frame' to stream")
  if train and (config.pre_graph_bn or config.use_norm == "BN"):
    return "BatchNorm in training mode uses statistics of the whole batch of clips"
  return None


class RSTGGraph(nn.Module):
  """Node features in, node outputs out: [B, T, N, C] -> [B, T, N, C_out].

  Call with a whole clip `nodes` [B, T, N, C], or stream with `carry=` (from
  `initial_carry`) and one frame `nodes` [B, N, C], which returns (carry, O_t [B, N, C_out]).
  Frame by frame from the zero carry gives exactly the whole-clip outputs whenever
  `not_streamable_reason` is None (not for the original's whole-clip LayerNorm).

  Attributes:
    config: the graph settings.
    project: dense C -> D on the pooled nodes (`project_i3d`) and D -> C on the outputs
      (`project_back_to_i3d`), so C_out = C; without it C must equal D and C_out = D.
    out_channels: C_out of the back projection when it differs from C (moment pooling).
    dtype: compute dtype. Under bfloat16 only the matmuls of `config.bf16_parts` take
      bfloat16 inputs (float32 accumulation); parameters, states, norms and the output
      are float32 (rstg_jax/models/graph/precision.py).
  """
  config: GraphConfig
  project: bool = False
  out_channels: int | None = None
  dtype: Any = jnp.float32

  def _check_input(self, nodes: jnp.ndarray, frame: bool):
    cfg = self.config
    want, shape = (3, "[B, N, C]") if frame else (4, "[B, T, N, C]")
    if nodes.ndim != want or nodes.shape[-2] != cfg.num_nodes:
      raise ValueError(f"RSTGGraph expects node features {shape} with N="
                       f"{cfg.num_nodes}, got shape {nodes.shape}")
    if not frame and nodes.shape[1] == 0:
      raise ValueError(f"RSTGGraph got a clip with T=0 frames (shape {nodes.shape})")
    if not self.project and nodes.shape[-1] != cfg.node_feat_dim:
      raise ValueError(
          f"node features have C={nodes.shape[-1]} channels but the graph's "
          f"node_feat_dim is {cfg.node_feat_dim}; set project=True (as the original does "
          "at res4/res5/final) or match the widths")

  @nn.compact
  def __call__(self, nodes: jnp.ndarray, *, train: bool = False,
               carry: Carry | None = None):
    cfg = self.config
    streaming = carry is not None
    if streaming:
      reason = not_streamable_reason(cfg, train)
      if reason is not None:
        raise ValueError(f"this graph cannot stream: {reason}")
    self._check_input(nodes, frame=streaming)
    channels = self.out_channels or nodes.shape[-1]

    # Pre-graph processing (spec §4).
    act = precision.activation_dtype(self.dtype)
    proj_dtype = precision.part_dtype(cfg.bf16_part_set, "projections", self.dtype)
    z = nodes
    if self.project:
      z = dense(cfg.node_feat_dim, "project_i3d", proj_dtype)(z)
    z = z.astype(act)
    if cfg.pre_graph_bn:
      z = tf_batch_norm("batch_normalization", train, act)(z)
    # 'clip' spans (T, N, D) as the original; 'per_frame' spans (N, D): causal.
    axes = 3 if (cfg.norm_scope == "clip" and not streaming) else 2
    z = make_norm(cfg.use_norm, "before_graf", num_axes=axes, train=train, dtype=act)(z)

    cell = RSTGCell(cfg, dtype=self.dtype, name="cell")
    if streaming:
      carry, out = cell(carry, z, train)
    elif cfg.scan == "k_pass":
      out = cell.k_pass(z, train=train)
    else:
      out = self._fused_scan(cell, z, train)

    if self.project:
      out = dense(channels, "project_back_to_i3d", proj_dtype)(out)
    return (carry, out) if streaming else out

  def _fused_scan(self, cell: RSTGCell, z: jnp.ndarray, train: bool) -> jnp.ndarray:
    """One scan over time carrying the LSTM states: z [B, T, N, D] -> [B, T, N, D]."""
    def body(c, carry, z_t):
      return c(carry, z_t, train)

    if self.config.remat:
      body = nn.remat(body)
    # 'intermediates' (sown only when mutable, e.g. by tools/explain) stack over time.
    scan = nn.scan(body, variable_broadcast="params", variable_carry="batch_stats",
                   variable_axes={"intermediates": 1},
                   split_rngs={"params": False}, in_axes=1, out_axes=1,
                   unroll=self.config.unroll)
    _, out = scan(cell, initial_carry(self.config, z.shape[0], z.dtype), z)
    return out
