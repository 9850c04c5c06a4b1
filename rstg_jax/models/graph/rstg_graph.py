"""The RSTG graph on node features: pre-graph processing, the recurrence, projections.

The recurrence of spec §6.2 is K iterations of (internal LSTM over the whole sequence,
space stage per frame) followed by an external LSTM. Because every quantity at
(iteration k, time t) depends only on (k-1, t) and (k, t-1), it equals ONE scan over time
whose carry holds the K+1 LSTM states (spec §6.3): `scan='fused'`. That is the form
that streams, one frame at a time. Over a whole clip it runs skewed by default
(`GraphConfig.wavefront`): step s takes iteration k on frame s - k, all K iterations in
one batched call. `scan='k_pass'` runs the K passes literally; all use the same
parameters.
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
# The skewed schedule's carry: internal (c, h) stacked by time-stage iteration, the
# external state (None for stages='space'), the node states waiting for the next
# iteration.
WaveCarry = tuple[time_stage.LSTMState, Any, jnp.ndarray]


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

  def wave_step(self, carry: WaveCarry, z_s: jnp.ndarray | None, lo: int, hi: int,
                train: bool = False) -> tuple[WaveCarry, jnp.ndarray | None]:
    """One step of the skewed schedule (`RSTGGraph._wavefront_scan`).

    Iterations lo..hi are busy, iteration k on frame s - k: its input is the new frame
    z_s [B, N, D] for k = 0, else the pending output of iteration k - 1 from the last
    step. The busy iterations run as one LSTM call and one space-stage call over a
    leading axis [n = hi - lo + 1] (both modules are shared by the iterations).
    carry = ((c, h) [K_t, B, N, D], the external LSTM state (c, h) [B, N, D] or None,
    pending [K - 1, B, N, D]), K_t = len(time_stage_iters). Returns the new carry and,
    when hi = K - 1, the output o [B, N, D] of frame s - (K - 1), else None.
    """
    cfg = self.config
    last = cfg.num_process_iter - 1
    iters = cfg.time_stage_iters
    (c, h), ext, pending = carry
    busy = range(lo, hi + 1)
    x = jnp.stack([z_s if k == 0 else pending[k - 1] for k in busy])  # [n, B, N, D]
    timed = [i for i, k in enumerate(busy) if k in iters]
    if timed:
      # busy is a range and iters a prefix of the iterations or all of them, so the
      # LSTM rows and their states are contiguous.
      assert timed == list(range(timed[0], timed[-1] + 1)), (busy, iters)
      rows = slice(timed[0], timed[-1] + 1)
      j = iters.index(busy[timed[0]])
      states = slice(j, j + len(timed))
      (c_new, h_new), y = self.lstm_int((c[states], h[states]), x[rows])
      c, h = c.at[states].set(c_new), h.at[states].set(h_new)
      x = y if len(timed) == len(busy) else x.at[rows].set(y)
    if cfg.use_space:
      x = self._after_space(x, self.space(x, train))
    feeds = min(hi, last - 1) - lo + 1  # busy iterations whose output another takes
    if feeds > 0:
      pending = pending.at[lo:lo + feeds].set(x[:feeds])
    o = None
    if hi == last:
      o = x[-1]
      if cfg.use_time:
        ext, o = self.lstm_ext(ext, o)
    return ((c, h), ext, pending), o

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
  Frame by frame from the zero carry gives exactly the outputs of the step-by-step
  whole-clip scan (`wavefront=False`), and those of the other schedules up to float
  rounding, whenever `not_streamable_reason` is None (not for the original's whole-clip
  LayerNorm).

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
    elif cfg.scan == "k_pass" or (cfg.use_norm == "BN" and self.is_initializing()):
      # The fused scan carries message BatchNorm's statistics, which flax cannot
      # create inside it; the K-pass form creates the same variables.
      out = cell.k_pass(z, train=train)
    elif self._use_wavefront:
      out = self._wavefront_scan(cell, z, train)
    else:
      out = self._fused_scan(cell, z, train)

    if self.project:
      out = dense(channels, "project_back_to_i3d", proj_dtype)(out)
    return (carry, out) if streaming else out

  @property
  def _use_wavefront(self) -> bool:
    # Message BatchNorm takes statistics over the frames of one call, which the
    # batched iterations would pool; the sown intermediates are per iteration and time.
    cfg = self.config
    return (cfg.wavefront and cfg.use_norm != "BN"
            and not self.is_mutable_collection("intermediates"))

  def _wavefront_scan(self, cell: RSTGCell, z: jnp.ndarray, train: bool) -> jnp.ndarray:
    """The fused recurrence on the skewed schedule (`GraphConfig.wavefront`):
    z [B, T, N, D] -> [B, T, N, D].

    Step s (of T + K - 1) runs iteration k on frame s - k for every k with a frame.
    The steps where all K iterations are busy (s = K-1 .. T-1) form one scan; the
    K - 1 steps before and after it run outside, each with only its busy iterations.
    """
    cfg = self.config
    b, frames = z.shape[:2]
    last = cfg.num_process_iter - 1

    def zeros(n):
      return jnp.zeros((n, b, cfg.num_nodes, cfg.node_feat_dim), z.dtype)

    timed = len(cfg.time_stage_iters)
    ext = (time_stage.zero_state((b, cfg.num_nodes), cfg.node_feat_dim, z.dtype)
           if cfg.use_time else None)
    carry = ((zeros(timed), zeros(timed)), ext, zeros(last))

    def step(lo, hi):
      def body(c, carry, z_s):
        return c.wave_step(carry, z_s, lo, hi, train)
      return nn.remat(body) if cfg.remat else body

    outs, s = [], 0
    while s < frames + last:
      lo, hi = max(0, s - frames + 1), min(last, s)
      if lo == 0 and hi == last:  # s = K-1 .. T-1: every iteration busy
        scan = nn.scan(step(lo, hi), variable_broadcast="params",
                       split_rngs={"params": False}, in_axes=1, out_axes=1,
                       unroll=cfg.unroll)
        carry, o = scan(cell, carry, z[:, s:])
        outs.append(o)
        s = frames
        continue
      carry, o = step(lo, hi)(cell, carry, z[:, s] if lo == 0 else None)
      if o is not None:
        outs.append(o[:, None])
      s += 1
    return jnp.concatenate(outs, axis=1)

  def _fused_scan(self, cell: RSTGCell, z: jnp.ndarray, train: bool) -> jnp.ndarray:
    """One scan over time carrying the LSTM states: z [B, T, N, D] -> [B, T, N, D]."""
    def body(c, carry, z_t):
      return c(carry, z_t, train)

    if self.config.remat:
      body = nn.remat(body)
    # 'intermediates' (sown only when mutable, e.g. by tools/explain) stack over time.
    # Message BatchNorm's statistics: carried (updated every step) in training, read
    # only otherwise, where flax cannot carry an immutable collection.
    stats = "batch_stats"
    carried = stats if self.is_mutable_collection(stats) else ()
    broadcast = ["params"] + ([] if carried else [stats])
    scan = nn.scan(body, variable_broadcast=broadcast, variable_carry=carried,
                   variable_axes={"intermediates": 1},
                   split_rngs={"params": False}, in_axes=1, out_axes=1,
                   unroll=self.config.unroll)
    _, out = scan(cell, initial_carry(self.config, z.shape[0], z.dtype), z)
    return out
