"""Streaming inference: frames in one at a time, a prediction after every frame.

The whole-clip classifiers (`models/classifiers/syncmnist_model.py`, `models/classifiers/smt_model.py`) are
re-composed here step by step from the SAME variables, sliced per submodule:

  backbone on the new frame(s) -> node pooling -> one step of the graph's scan carry
  (`RSTGGraph(..., carry=)`) -> running sums of what the whole clip averages over time
  (the graph's node outputs for RSTG-to-vec, the pooled backbone features) -> the
  head on the running means.

So the prediction after frame t is the model's prediction on frames 0..t, and after
the last frame it equals the whole-clip prediction (tests/test_predict.py asserts
it). Only causal models stream:
  - the graph must normalise per frame (`graph.norm_scope='per_frame'`, or no norm):
    the original's LayerNorm spans the whole clip (T, N, D), so its output at frame 1
    depends on frame 32 (`rstg_graph.not_streamable_reason`);
  - SyncMNIST: head 'rstg' (SimpleConv is per frame);
  - Something-Something: a C2D backbone (temporal kernels 1; I3D's 3-frame kernels
    would need a frame buffer per layer), no Non-Local blocks (they attend over the
    whole clip), the graph at `final` only, and a pool5 window covering the whole
    clip in time. C2D max-pools frames in pairs after res2, so the graph advances
    every `temporal_pool2` frames; in between the frames are buffered.
`reason_not_streamable(config)` says why a config cannot stream.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rstg_jax.models.graph import area_resize
from rstg_jax.models.graph import readouts
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.norms import tf_batch_norm
from rstg_jax.models.graph.rstg_graph import RSTGGraph, initial_carry, not_streamable_reason


class NotStreamableError(ValueError):
  """The config's model cannot be fed one frame at a time (the message says why)."""


def reason_not_streamable(config) -> str | None:
  """None if `config`'s model streams, else why not (one sentence)."""
  m = config.model
  if config.task == "sync_mnist":
    if m.head != "rstg":
      return (f"config.model.head={m.head!r}: --stream steps the RSTG graph's scan "
              "carry; use a head 'rstg' config (e.g. configs/syncmnist_rstg_causal.py)")
  elif config.task == "something_something":
    from rstg_jax.models.classifiers import smt_model  # pylint: disable=g-import-not-at-top
    places = smt_model.parse_places(m.place_graph, smt_model.GRAPH_PLACES, "place_graph")
    if places != ("final",):
      return (f"config.model.place_graph={m.place_graph!r}: streaming needs the graph "
              "at 'final' only (a graph inside res3/res4 is not stepped frame by frame)")
    if m.backbone != "c2d":
      return (f"config.model.backbone={m.backbone!r}: its 3-frame temporal kernels see "
              "future frames; streaming needs the per-frame 'c2d' backbone")
    if str(m.place_nonlocal).lower() not in ("", "none"):
      return ("config.model.place_nonlocal: Non-Local blocks attend over the whole "
              "clip; streaming needs place_nonlocal='none'")
    window = m.pool5_window
    frames = config.data.num_frames // 2
    if window is not None and window[0] < frames:
      return (f"config.model.pool5_window={tuple(window)} averages {window[0]} of the "
              f"clip's {frames} res5 steps: several temporal outputs, not a running mean")
  else:
    return f"config.task={config.task!r} has no streaming path"
  reason = not_streamable_reason(GraphConfig.from_dict(dict(m.graph)))
  if reason:
    return (f"{reason}. Whole-clip normalisation cannot stream: the first frame's "
            "features depend on the last frame (configs/*_causal.py train with "
            "norm_scope='per_frame')")
  return None


def _sub(variables: dict[str, Any], *path: str) -> dict[str, Any]:
  """The variables of one submodule: {'params': ..., 'batch_stats': ...} at `path`."""
  out = {}
  for collection, tree in variables.items():
    for p in path:
      tree = tree.get(p) if isinstance(tree, dict) else None
      if tree is None:
        break
    if tree:
      out[collection] = tree
  return out


@dataclasses.dataclass
class StreamState:
  """What a stream carries between frames (batch B).

  graph: the graph's LSTM states (`rstg_graph.initial_carry`); node_sum [B, N, C] the
  sum of the graph's node outputs so far; pooled_sum the sum of the backbone's
  pooled features ([B, W] SyncMNIST, [B, h, w, C] Something-Something); steps the
  graph steps taken; pending the frames waiting for a full temporal-pool window.
  """
  graph: Any
  node_sum: jax.Array
  pooled_sum: jax.Array
  steps: int = 0
  pending: list = dataclasses.field(default_factory=list)


class Streamer:
  """Feeds a classifier one frame at a time; see the module docstring.

  Args:
    config: the experiment config (must stream: `reason_not_streamable`).
    model: the whole-clip classifier built from it (its attributes are reused).
    variables: {'params', 'batch_stats'} of the model.

  `start(batch)` returns a fresh state; `push(state, frame [B, H, W, C])` returns
  (state, logits [B, K] or None while frames are buffered).
  """

  def __init__(self, config, model: nn.Module, variables: dict[str, Any]):
    reason = reason_not_streamable(config)
    if reason:
      raise NotStreamableError(f"--stream: {reason}")
    self.config, self.model = config, model
    self.variables = jax.device_put(variables)
    self.graph_cfg = GraphConfig.from_dict(dict(config.model.graph))
    self.smt = config.task == "something_something"
    # Frames per graph step: C2D max-pools time by `temporal_pool2` after res2.
    self.frames_per_step = model.backbone.temporal_pool2 if self.smt else 1
    self._step = jax.jit(self._smt_step if self.smt else self._mnist_step)
    self._sum_shapes: dict[tuple, tuple] = {}

  def start(self, batch_size: int) -> StreamState:
    return StreamState(graph=initial_carry(self.graph_cfg, batch_size, jnp.float32),
                       node_sum=None, pooled_sum=None)

  def push(self, state: StreamState, frame: np.ndarray
           ) -> tuple[StreamState, jax.Array | None]:
    """One frame [B, H, W, C] (uint8 0..255) -> (state, logits [B, K] or None)."""
    state.pending.append(np.asarray(frame))
    if len(state.pending) < self.frames_per_step:
      return state, None
    frames = np.stack(state.pending, axis=1)          # [B, t, H, W, C]
    state.pending = []
    if state.node_sum is None:
      # The running sums start at zero; their shapes come from tracing one step
      # (no compile, once per frame shape), so every step runs the same compiled
      # function.
      key = (frames.shape, frames.dtype)
      if key not in self._sum_shapes:
        _, node_sum, pooled_sum, _ = jax.eval_shape(
            self._step, self.variables, state.graph, None, None, frames, 1)
        self._sum_shapes[key] = (node_sum, pooled_sum)
      node_sum, pooled_sum = self._sum_shapes[key]
      state.node_sum = jnp.zeros(node_sum.shape, node_sum.dtype)
      state.pooled_sum = jnp.zeros(pooled_sum.shape, pooled_sum.dtype)
    graph, node_sum, pooled_sum, logits = self._step(
        self.variables, state.graph, state.node_sum, state.pooled_sum, frames,
        state.steps + 1)
    return StreamState(graph, node_sum, pooled_sum, state.steps + 1), logits

  # ---- the two model families; each is one jitted step ---------------------------

  def _graph_step(self, variables, prefix: tuple[str, ...], carry, fmap, node_sum,
                  steps, project: bool):
    """fmap [B, 1, h, w, C] -> (carry, node_sum, RSTG-to-vec branch [B, C])."""
    cfg = self.graph_cfg
    nodes = area_resize.pool_to_nodes(fmap, cfg.scales)[:, 0]      # [B, N, C]
    graph = RSTGGraph(cfg, project=project, dtype=self.model.dtype)
    carry, out = graph.apply(_sub(variables, *prefix, "graph"), nodes, carry=carry)
    node_sum = out if node_sum is None else node_sum + out
    # to_vec: mean over time, then SUM over nodes (readouts.to_vec).
    vec = jnp.sum(node_sum / steps, axis=1)                        # [B, C]
    return carry, node_sum, vec

  def _mnist_step(self, variables, carry, node_sum, pooled_sum, frames, steps):
    m = self.model
    from rstg_jax.models.backbones.simple_conv import SimpleConv  # pylint: disable=g-import-not-at-top
    fmap = SimpleConv(width=m.backbone_width, input_scale=m.input_scale,
                      dtype=m.dtype).apply(_sub(variables, "backbone"), frames)
    carry, node_sum, vec = self._graph_step(
        variables, ("graph",), carry, fmap, node_sum, steps,
        project=m.graph.node_feat_dim != m.backbone_width)
    feats = readouts.ResidualNorm(m.residual_norm, num_axes=1, dtype=m.dtype).apply(
        _sub(variables, "graph", "residual"), vec, train=False)
    pooled = jnp.mean(fmap, axis=(1, 2, 3))                        # [B, W]
    pooled_sum = pooled if pooled_sum is None else pooled_sum + pooled
    if m.combine == "plus":
      mean = pooled_sum / steps
      if m.baseline_bn:
        mean = tf_batch_norm("baseline_bn", False, m.dtype).apply(
            _sub(variables, "baseline_bn"), mean)
      feats = feats + mean
    logits = nn.Dense(m.num_classes, dtype=m.dtype).apply(_sub(variables, "pred"), feats)
    return carry, node_sum, pooled_sum, logits.astype(jnp.float32)

  def _smt_step(self, variables, carry, node_sum, pooled_sum, frames, steps):
    m = self.model
    x = frames.astype(jnp.float32)
    if jnp.issubdtype(frames.dtype, jnp.integer):
      x = (x - m.input_mean) / m.input_std
    feats = m.backbone.apply(_sub(variables, "backbone"), x, train=False)["res5"]
    from rstg_jax.models.classifiers.smt_model import _pool5  # pylint: disable=g-import-not-at-top
    window = None if m.pool5_window is None else (1,) + tuple(m.pool5_window[1:])
    pooled = _pool5(feats, window)[:, 0]                           # [B, h, w, C]
    pooled_sum = pooled if pooled_sum is None else pooled_sum + pooled
    carry, node_sum, vec = self._graph_step(
        variables, ("graph_final",), carry, feats, node_sum, steps,
        project=feats.shape[-1] != m.graph.node_feat_dim)
    vec = readouts.ResidualNorm(m.final_norm, num_axes=1, dtype=m.dtype).apply(
        _sub(variables, "graph_final", "residual"), vec, train=False)
    vec = vec.astype(jnp.float32)[:, None, None, :]
    mean = pooled_sum / steps
    combined = mean + vec if m.comb_type == "plus" else jnp.broadcast_to(vec, mean.shape)
    logits = nn.Dense(m.num_classes, kernel_init=nn.initializers.glorot_uniform()).apply(
        _sub(variables, "pred"), combined)                         # [B, h, w, K]
    return carry, node_sum, pooled_sum, jnp.mean(logits, axis=(1, 2))

