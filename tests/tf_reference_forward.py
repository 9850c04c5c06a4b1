"""An independent forward pass of the original models, from checkpoint tensors by name.

Backbones with plain TensorFlow ops (`tf.nn.conv3d` on explicitly padded input,
`tf.nn.batch_normalization`, `tf.nn.max_pool3d` / `avg_pool3d`), node pooling and
RSTG-to-map up-sampling with TF1's `resize_area` (as the original probed its filters),
the graph in float64 NumPy, its LSTMs straight from the cuDNN canonical layout (TF gate
order i, g, f, o). Written from the spec (§3-§8); imports nothing from rstg_jax.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf1_checkpoint_writer import I3D_INFLATE, LSTM_CELL, OriginalModel


class Tensors:
  def __init__(self, prefix_or_dict):
    if isinstance(prefix_or_dict, dict):
      self._d = prefix_or_dict
    else:
      r = tf.train.load_checkpoint(prefix_or_dict)
      self._d = {k: r.get_tensor(k) for k in r.get_variable_to_shape_map()}

  def __getitem__(self, name):
    return self._d[name]

  def __contains__(self, name):
    return name in self._d


# ------------------------------------------------------------------ backbone (TF ops)


def _conv(x, k, stride=(1, 1, 1), pad=(0, 0, 0)):
  x = tf.pad(x, [[0, 0]] + [[p, p] for p in pad] + [[0, 0]])
  return tf.nn.conv3d(x, tf.constant(k), strides=(1,) + tuple(stride) + (1,),
                      padding="VALID")


def _bn(x, w, name, eps=1e-5):
  return tf.nn.batch_normalization(x, w[f"{name}/moving_mean"],
                                   w[f"{name}/moving_variance"], w[f"{name}/beta"],
                                   w[f"{name}/gamma"], eps)


def _nonlocal(x, w, q):
  b, t, h, wd, c = x.shape
  inner = c // 2
  conv = lambda y, n: _conv(y, w[f"{q}_{n}/kernel"]) + w[f"{q}_{n}/bias"]
  pooled = tf.nn.max_pool3d(x, (1, 1, 2, 2, 1), (1, 1, 2, 2, 1), "VALID")
  theta = tf.reshape(conv(x, "theta"), (b, -1, inner))
  phi = tf.reshape(conv(pooled, "phi"), (b, -1, inner))
  g = tf.reshape(conv(pooled, "g"), (b, -1, inner))
  aff = tf.nn.softmax(tf.matmul(theta, phi, transpose_b=True) * inner ** -0.5, axis=-1)
  y = tf.reshape(tf.matmul(aff, g), (b, t, h, wd, inner))
  y = _bn(conv(y, "out"), w, f"{q}_bn")
  return x + y


def backbone(m: OriginalModel, w: Tensors, video: np.ndarray, graph_fn=None):
  """video [B, T, H, W, 3] (normalised) -> res5 [B, T', H', W', C] (numpy)."""
  b = f"{m.root}/backbone"
  kt = 1 if m.backbone == "c2d" else 5
  x = tf.constant(video, tf.float32)
  x = tf.nn.relu(_bn(_conv(x, w[f"{b}/conv1/kernel"], (1, 2, 2), (kt // 2, 3, 3)), w,
                     f"{b}/res_conv1_bn"))
  x = tf.nn.max_pool3d(x, (1, 1, 3, 3, 1), (1, 1, 2, 2, 1), "VALID")
  for si, n in enumerate(m.stage_sizes):
    r = si + 2
    for blk in range(n):
      p = f"{b}/res{r}_{blk}"
      s = 2 if (blk == 0 and r in (3, 4)) else 1  # res5 keeps stride 1 (spec §8.2)
      u = I3D_INFLATE[si][blk] if m.backbone != "c2d" else 0
      y = tf.nn.relu(_bn(_conv(x, w[f"{p}_branch2a/kernel"], pad=(u, 0, 0)), w,
                         f"{p}_branch2a_bn"))
      y = tf.nn.relu(_bn(_conv(y, w[f"{p}_branch2b/kernel"], (1, s, s), (0, 1, 1)), w,
                         f"{p}_branch2b_bn"))
      y = _bn(_conv(y, w[f"{p}_branch2c/kernel"]), w, f"{p}_branch2c_bn")
      sc = x
      if f"{p}_branch1/kernel" in w:
        sc = _bn(_conv(x, w[f"{p}_branch1/kernel"], (1, s, s)), w, f"{p}_branch1_bn")
      x = tf.nn.relu(y + sc)
      if f"res{r}" in m.place_nonlocal and blk % 2 == 1:
        x = _nonlocal(x, w, f"{b}/nonlocal_conv{r}_{blk}")
      if f"res{r}" in m.place_graph and blk == n - 2:
        x = x + tf.constant(graph_fn(f"res{r}", x.numpy()), tf.float32)
    if r == 2:
      x = tf.nn.max_pool3d(x, (1, 2, 1, 1, 1), (1, 2, 1, 1, 1), "VALID")
  return x.numpy()


def simple_conv(w: Tensors, video: np.ndarray) -> np.ndarray:
  b, t = video.shape[:2]
  x = tf.constant(video.reshape((b * t,) + video.shape[2:]), tf.float32)
  for i in range(3):
    x = tf.nn.conv2d(x, w[f"tower/conv{i}/conv2d/kernel"], 1, "VALID")
    x = tf.nn.relu(x + w[f"tower/conv{i}/conv2d/bias"])
    x = tf.nn.max_pool2d(x, 2, 2, "VALID")
  x = x.numpy()
  return x.reshape((b, t) + x.shape[1:])


# ------------------------------------------------------------------ graph (NumPy f64)


def adjacency(dim: int = 224) -> np.ndarray:
  """Spec §2.2-§2.3."""
  boxes = []
  for s in (3, 2, 1):
    p = dim // s
    starts = [k * p for k in range(s) if k * p + p <= dim]
    boxes += [(x0, x0 + p, y0, y0 + p) for y0 in starts for x0 in starts]
  n = len(boxes)
  a = np.zeros((n, n))
  for i in range(n):
    for j in range(i):
      dx = min(boxes[i][1], boxes[j][1]) - max(boxes[i][0], boxes[j][0])
      dy = min(boxes[i][3], boxes[j][3]) - max(boxes[i][2], boxes[j][2])
      if dx >= 0 and dy >= 0 and not (dx == 0 and dy == 0):
        a[i, j] = a[j, i] = 1.0
  return a


def _resize_area(x: np.ndarray, h: int, w: int) -> np.ndarray:
  """[..., H, W, C] -> [..., h, w, C] with TF1's resize_area (align_corners=False)."""
  lead = x.shape[:-3]
  flat = x.reshape((-1,) + x.shape[-3:]).astype(np.float32)
  y = tf.compat.v1.image.resize_area(flat, (h, w), align_corners=False).numpy()
  return y.reshape(lead + y.shape[1:]).astype(np.float64)


def _ln(x, num_axes, w=None, prefix=None, scale=True):
  axes = tuple(range(x.ndim - num_axes, x.ndim))
  mu = x.mean(axis=axes, keepdims=True)
  var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
  y = (x - mu) / np.sqrt(var + 1e-12)
  if prefix is not None:
    if scale:
      y = y * w[f"{prefix}/gamma"]
    y = y + w[f"{prefix}/beta"]
  return y


def _sig(x):
  return 1 / (1 + np.exp(-x))


def _lstm(w, prefix, xs):
  """xs [T, M, D] -> hs, zero state, canonical kernel [x; h] -> (i, g, f, o)."""
  k = w[f"{prefix}/{LSTM_CELL}/kernel"].astype(np.float64)
  bias = w[f"{prefix}/{LSTM_CELL}/bias"].astype(np.float64)
  d = k.shape[1] // 4
  h = np.zeros(xs.shape[1:-1] + (d,))
  c = np.zeros_like(h)
  out = []
  for x in xs:
    z = np.concatenate([x, h], -1) @ k + bias
    i, g, f, o = (z[..., j * d:(j + 1) * d] for j in range(4))
    c = _sig(f) * c + _sig(i) * np.tanh(g)
    h = _sig(o) * np.tanh(c)
    out.append(h)
  return np.stack(out)


def _dense(x, w, name, squeeze=0):
  k = w[f"{name}/kernel"].astype(np.float64)
  k = k.reshape(k.shape[squeeze:])
  return x @ k + w[f"{name}/bias"]


def _space(m: OriginalModel, w, g, x, adj, pe):
  """One frame: x [B, N, D] -> [B, N, D] (spec §5)."""
  ln = m.use_norm == "LN"
  b, n, d = x.shape
  z = x if pe is None else np.concatenate([x, np.broadcast_to(pe, (b,) + pe.shape)], -1)
  u = np.concatenate([np.broadcast_to(z[:, None, :, :], (b, n, n, z.shape[-1])),   # z_j
                      np.broadcast_to(z[:, :, None, :], (b, n, n, z.shape[-1]))],  # z_i
                     -1)
  s = f"{g}/send_messages_mlp"
  msg = np.maximum(_dense(u, w, f"{s}/send_conv1", 2), 0)
  msg = np.maximum(_dense(msg, w, f"{s}/send_conv2", 2), 0)
  if ln:
    msg = _ln(msg, 3, w, f"{s}/message_ln")
  if m.use_att == "dot":
    a = f"{g}/dot_product_attn"
    q = _dense(x, w, f"{a}/att_conv1", 1)
    k = _dense(x, w, f"{a}/att_conv2", 1)
    logits = adj * np.einsum("bid,bjd->bij", q, k)
  else:
    a = f"{g}/my_attn"
    si = _dense(x, w, f"{a}/att_conv1", 1)[..., 0]
    sj = _dense(x, w, f"{a}/att_conv2", 1)[..., 0]
    e = adj * (si[:, :, None] + sj[:, None, :])
    logits = np.where(e > 0, e, 0.2 * e) + adj
  e = np.exp(logits - logits.max(-1, keepdims=True))
  alpha = e / e.sum(-1, keepdims=True)
  agg = np.einsum("bij,bijm->bim", alpha, msg) + w[f"{a}/att_bias/biases"]
  if m.use_att == "simple" and ln:
    agg = _ln(agg, 2, w, f"{a}/att_ln")
  agg = np.maximum(agg, 0)
  cat = np.concatenate([x, agg], -1)
  if m.scalewise:
    upd = f"{g}/update_node_mlp_"
    parts = []
    for t, sl in ((1, slice(0, 9)), (2, slice(9, 13)), (3, slice(13, 14))):
      h = cat[:, sl]
      for layer in (1, 2):
        h = np.maximum(_dense(h, w, f"{upd}/update_conv{layer}_type{t}", 1), 0)
      parts.append(h)
    out = np.concatenate(parts, 1)
  else:
    upd = f"{g}/update_node_mlp"
    out = cat
    for layer in (1, 2):
      out = np.maximum(_dense(out, w, f"{upd}/update_conv{layer}", 1), 0)
  if ln:
    out = _ln(out, 2, w, f"{upd}/update_ln")
  return out


def graph(m: OriginalModel, w: Tensors, place: str, fmap: np.ndarray,
          num_iter: int = 3, image_dim: int = 224) -> np.ndarray:
  """The graph branch at `place` on fmap [B, T, H, W, C]: [B, C] (final) or the map."""
  fmap = np.asarray(fmap, np.float64)
  b, t, hh, ww, c = fmap.shape
  scope = m.root if place == "final" else f"{m.root}/backbone"
  g = f"{scope}/whole_graph_model_{place}"
  nodes = np.concatenate([_resize_area(fmap, s, s).reshape(b, t, s * s, c)
                          for s in (3, 2, 1)], axis=2)                # [B, T, 14, C]
  z = nodes
  proj = f"{g}/project_i3d/kernel" in w
  if proj:
    z = _dense(z, w, f"{g}/project_i3d")
  if m.pre_graph_bn:
    bn = f"{g}/batch_normalization"
    z = (z - w[f"{bn}/moving_mean"]) / np.sqrt(w[f"{bn}/moving_variance"] + 1e-3) \
        * w[f"{bn}/gamma"] + w[f"{bn}/beta"]
  if m.use_norm == "LN":
    z = _ln(z, 3, w, f"{g}/before_graf_ln")
  z = z.transpose(1, 0, 2, 3)                                           # [T, B, 14, D]
  adj = adjacency(image_dim)
  pe = np.asarray(w["tower/positional_emb"], np.float64) if m.use_pe else None
  for _ in range(num_iter):
    hs = _lstm(w, f"{g}/cudnn_lstm", z)
    z = np.stack([_space(m, w, g, hs[k], adj, pe) for k in range(t)])
  out = _lstm(w, f"{g}/time_update_extern/cudnn_lstm", z).transpose(1, 0, 2, 3)
  if proj:
    out = _dense(out, w, f"{g}/project_back_to_i3d")
  if place == "final":
    y = out.mean(axis=1).sum(axis=1)                                    # [B, C]
  else:
    y = 0.0
    start = 0
    for s in (3, 2, 1):
      cells = out[:, :, start:start + s * s].reshape(b, t, s, s, -1)
      y = y + _resize_area(cells, hh, ww)
      start += s * s
  if m.backbone == "simple" or m.final_norm != "LN":
    return y
  prefix = f"{scope}/" + ("" if m.backbone == "c2d" else f"{place}_")
  y = _ln(y, y.ndim - 1)
  return (y + w[f"{prefix}after_graph_ln/beta"]) * w[f"{prefix}after_graph_ln_scale"]


def logits(m: OriginalModel, w: Tensors, video: np.ndarray, *, num_iter: int = 3,
           image_dim: int = 224, pool5=(16, 14, 14)) -> np.ndarray:
  """The original model's logits [B, K] for `video` (normalised RGB or 0-255 digits)."""
  gfn = lambda place, x: graph(m, w, place, x, num_iter, image_dim)
  if m.backbone == "simple":
    fmap = simple_conv(w, video)
    vec = gfn("final", fmap)                                            # serial
    k = w["tower/pred/kernel"]
    return vec @ k.reshape(k.shape[-2:]) + w["tower/pred/bias"]
  res5 = backbone(m, w, video, gfn)
  window = tuple(min(a, s) for a, s in zip(pool5, res5.shape[1:4]))
  pooled = tf.nn.avg_pool3d(tf.constant(res5), (1,) + window + (1,), (1, 1, 1, 1, 1),
                            "VALID").numpy().astype(np.float64)
  if "final" in m.place_graph:
    pooled = pooled + gfn("final", res5)[:, None, None, None, :]
  k = w[f"{m.root}/pred/kernel"]
  out = pooled @ k.reshape(k.shape[-2:]).astype(np.float64) + w[f"{m.root}/pred/bias"]
  return out.mean(axis=(1, 2, 3))
