"""The space processing stage of RSTG: messages, attention, node update (spec §5).

One stage maps node states [..., N, D] of single frames to new states [..., N, D]; any
leading axes ([B] in the fused scan, [B, T] in the K-pass form) are independent frames.
Parameters are shared across iterations and time by the caller reusing this module.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rstg_jax.models.graph import graph_layout
from rstg_jax.models.graph import precision
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.norms import make_norm

# TF layers default to Glorot-uniform kernels and zero biases.
KERNEL_INIT = nn.initializers.glorot_uniform()


def dense(features: int, name: str, dtype: Any) -> nn.Dense:
  """A TF-initialised dense layer; matmul inputs in `dtype` (rstg_jax.models.graph.precision)."""
  return precision.dense(features, name, dtype, kernel_init=KERNEL_INIT)


class PairDense(nn.Module):
  """The first message layer on every ordered pair u_ij = [z_j ; z_i] (sender first).

  The kernel keeps the original's [2F, M] layout, but W [z_j ; z_i] = W_s z_j + W_r z_i,
  so it is applied per node and broadcast over the pairs: an N-fold saving over
  materialising the [..., N, N, 2F] pair tensor.

  Input z [..., N, F] -> pre-activations [..., N (receiver i), N (sender j), M], float32
  under a bfloat16 `dtype` (the matmul inputs' dtype).
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    f = z.shape[-1]
    kernel = self.param("kernel", KERNEL_INIT, (2 * f, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    sender = precision.matmul(z, kernel[:f], self.dtype)     # [..., N, M], indexed by j
    receiver = precision.matmul(z, kernel[f:], self.dtype) + bias.astype(
        precision.activation_dtype(self.dtype))                # [..., N, M], indexed by i
    return receiver[..., :, None, :] + sender[..., None, :, :]


def attention_weights(logits: jnp.ndarray, adj: jnp.ndarray, adjacency: str) -> jnp.ndarray:
  """Softmax over senders j of logits [..., N, N].

  'reference': over all N senders (the original; the adjacency was already multiplied
  into the logits). 'masked': over true neighbours only; a node without neighbours
  gets all-zero weights.
  """
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  if adjacency == "reference":
    return jax.nn.softmax(logits, axis=-1)
  neighbour = adj > 0
  logits = jnp.where(neighbour, logits, -jnp.inf)
  has_any = jnp.any(neighbour, axis=-1, keepdims=True)
  logits = jnp.where(has_any, logits, 0.0)
  return jnp.where(neighbour, jax.nn.softmax(logits, axis=-1), 0.0)


def weighted_sum(alpha: jnp.ndarray, msg: jnp.ndarray) -> jnp.ndarray:
  """sum_j alpha[..., i, j] msg[..., i, j, :] in float32 as one fused multiply-reduce.

  As an einsum this is a batched [1, N] x [N, M] product per receiver, which XLA runs as
  many tiny matmuls; as a multiply-sum it is one memory-bound pass over the messages.
  """
  acc = jnp.promote_types(msg.dtype, jnp.float32)
  return jnp.sum(alpha.astype(acc)[..., None] * msg.astype(acc), axis=-2)


class GatherLayerNorm(nn.Module):
  """sum_j alpha_ij LN(msg)_ijm without writing LN(msg) (the 'message_ln' parameters).

  The TF-contrib LN over the per-frame block [N, N, M] is y = (x - mu) r gamma + beta
  with scalars mu, r = 1/sqrt(var + eps) per frame and a per-channel affine (gamma, beta).
  With w_i = sum_j alpha_ij (1 for a softmax, 0 for a masked node without neighbours):

    sum_j alpha_ij y_ijm = gamma_m r sum_j alpha_ij (x_ijm - mu) + beta_m w_i,

  exact up to float rounding whatever alpha is, as long as alpha does not depend on y
  (true of every attention kind here). Statistics in float32 (float64 under float64),
  two-pass variance, as norms.tf_layer_norm.
  """
  epsilon: float = 1e-12
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, msg: jnp.ndarray, alpha: jnp.ndarray) -> jnp.ndarray:
    m = msg.shape[-1]
    xf = msg.astype(jnp.promote_types(msg.dtype, jnp.float32))
    scale = self.param("scale", nn.initializers.ones, (m,), jnp.float32).astype(xf.dtype)
    bias = self.param("bias", nn.initializers.zeros, (m,), jnp.float32).astype(xf.dtype)
    axes = (-3, -2, -1)
    mean = jnp.mean(xf, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=axes)
    inv = jnp.reciprocal(jnp.sqrt(var + self.epsilon))[..., None, None]  # [..., 1, 1]
    w = jnp.sum(alpha.astype(xf.dtype), axis=-1)[..., None]          # [..., N, 1]
    # sum_j alpha_ij (x_ijm - mu), centred inside the fused multiply-sum: the weighted
    # mean of a receiver's messages is close to mu, so subtracting mu w afterwards would
    # cancel digits (measured: float32 gradients 10-100x further from float64).
    agg = weighted_sum(alpha, xf - mean)                                   # [..., N, M]
    g = agg * inv * scale + bias * w
    return g.astype(self.dtype)


class SpaceStage(nn.Module):
  """Space stage: x [..., N, D] -> x' [..., N, D]. No residual, as in the original.

  `dtype` is the compute dtype; under bfloat16 only the matmuls of `config.bf16_parts`
  take bfloat16 inputs and the output is float32 (rstg_jax/models/graph/precision.py).
  """
  config: GraphConfig
  dtype: Any = jnp.float32

  def _part(self, part: str) -> Any:
    """The matmul input dtype of one part (`GraphConfig.bf16_parts`)."""
    return precision.part_dtype(self.config.bf16_part_set, part, self.dtype)

  @property
  def _act(self) -> Any:
    return precision.activation_dtype(self.dtype)

  def _attention(self, x: jnp.ndarray, adj: jnp.ndarray) -> jnp.ndarray:
    """Attention weights alpha [..., N (receiver i), N (sender j)], float32.

    Every attention kind's logits come from the node states x only, never from the
    messages: this is what lets the message norm move after the gather (`pair_rewrite`).
    """
    cfg = self.config
    if cfg.use_att == "dot":
      dt = self._part("attention")
      q = dense(cfg.node_feat_dim, "att_conv1", dt)(x)  # receiver side
      k = dense(cfg.node_feat_dim, "att_conv2", dt)(x)  # sender side
      logits = precision.einsum("...id,...jd->...ij", q, k, dt)  # no 1/sqrt(d), as the original
      if cfg.adjacency == "reference":
        logits = adj * logits
    elif cfg.use_att == "simple":
      a = dense(1, "att_conv1", self._part("attention"))(x)[..., 0]  # receiver score
      b = dense(1, "att_conv2", self._part("attention"))(x)[..., 0]  # sender score
      score = a[..., :, None] + b[..., None, :]
      if cfg.adjacency == "reference":
        # Neighbours: LeakyReLU(score) + 1; self and non-neighbours: exactly 0.
        logits = nn.leaky_relu(adj * score, 0.2) + adj
      else:
        logits = nn.leaky_relu(score, 0.2)
    else:  # 'none': mean over senders (all of them, or the neighbours when masked)
      logits = jnp.zeros(x.shape[:-2] + adj.shape, x.dtype)
    return attention_weights(logits, adj, cfg.adjacency)

  def _gather(self, msg: jnp.ndarray, alpha: jnp.ndarray, train: bool) -> jnp.ndarray:
    """Message norm and attention-weighted sum over senders: msg [..., N, N, M] -> [..., N, M]."""
    cfg = self.config
    if cfg.pair_rewrite and cfg.use_norm != "BN":
      if cfg.use_norm == "LN":
        return GatherLayerNorm(name="message_ln", dtype=self._act)(msg, alpha)
      return weighted_sum(alpha, msg).astype(self._act)
    # The literal form: normalise every pair, then gather.
    msg = make_norm(cfg.use_norm, "message", num_axes=3, train=train, dtype=self._act)(msg)
    return jnp.einsum("...ij,...ijm->...im", alpha.astype(msg.dtype), msg)

  def _aggregate(self, x: jnp.ndarray, msg: jnp.ndarray, adj: jnp.ndarray,
                 train: bool) -> jnp.ndarray:
    """Normalised, attention-weighted gather of messages [..., N, N, M] -> g [..., N, M]."""
    cfg = self.config
    alpha = self._attention(x, adj)
    self.sow("intermediates", "attention", alpha)  # [..., receiver i, sender j]; explain
    g = self._gather(msg, alpha, train)
    g = g + self.param("att_bias", nn.initializers.zeros, (cfg.message_dims,),
                       jnp.float32).astype(g.dtype)
    if cfg.use_att == "simple":
      g = make_norm(cfg.use_norm, "att", num_axes=2, train=train, dtype=self._act)(g)
    return nn.relu(g)

  def _update(self, x: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
    """Node update MLP on [x_i ; g_i] -> [..., N, D], shared or one per scale."""
    cfg = self.config
    u = jnp.concatenate([x, g], axis=-1)

    def mlp(h, suffix):
      for layer in range(cfg.update_layers):
        h = nn.relu(dense(cfg.node_feat_dim, f"update_conv{layer + 1}{suffix}",
                          self._part("update"))(h))
      return h

    if not cfg.scalewise_update:
      return mlp(u, "")
    parts = [mlp(u[..., sl, :], f"_type{t + 1}")
             for t, sl in enumerate(graph_layout.scale_slices(cfg.scales))]
    return jnp.concatenate(parts, axis=-2)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    cfg = self.config
    if x.shape[-2:] != (cfg.num_nodes, cfg.node_feat_dim):
      raise ValueError(f"SpaceStage expects node states [..., {cfg.num_nodes}, "
                       f"{cfg.node_feat_dim}], got {x.shape}")
    adj = jnp.asarray(graph_layout.adjacency(cfg.num_scales, cfg.image_dim), jnp.float32)
    z = x
    if cfg.use_positional_emb:
      pe = jnp.asarray(graph_layout.positional_embedding(cfg.num_scales, cfg.dim_map), x.dtype)
      z = jnp.concatenate([x, jnp.broadcast_to(pe, x.shape[:-1] + pe.shape[-1:])], axis=-1)
    dt = self._part("messages")
    msg = nn.relu(PairDense(cfg.message_dims, dtype=dt, name="send_conv1")(z))
    msg = nn.relu(dense(cfg.message_dims, "send_conv2", dt)(msg))
    if "pairs" in cfg.bf16_part_set:
      msg = msg.astype(self.dtype)  # the stored pair tensor (a no-op unless bfloat16)
    # The message norm (statistics per frame over the whole (N, N, M) block) is applied
    # inside the gather.
    g = self._aggregate(x, msg, adj, train)
    out = self._update(x, g)
    return make_norm(cfg.use_norm, "update", num_axes=2, train=train, dtype=self._act)(out)
