"""An independent float64 NumPy RSTG, written straight from spec §4-§6.2.

It materialises every ordered pair [z_j ; z_i], loops over time in Python and runs the K
full-sequence passes of §6.2 literally, so it shares no code path with the package's
scan (only the layout constants, which have their own tests).
"""
import numpy as np

from rstg_jax.models.graph import graph_layout


def _np(tree):
  return {k: _np(v) if isinstance(v, dict) else np.asarray(v, np.float64)
          for k, v in tree.items()}


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def layer_norm(x, num_axes, p=None):
  axes = tuple(range(x.ndim - num_axes, x.ndim))
  mu = x.mean(axis=axes, keepdims=True)
  var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
  y = (x - mu) / np.sqrt(var + 1e-12)
  if p is not None:
    y = y * p["scale"] + p["bias"]
  return y


def lstm_sequence(p, xs):
  """xs [B, T, N, D] -> hs, from a zero state; gates i, f, g, o."""
  b, t, n, d = xs.shape
  c = np.zeros((b, n, d))
  h = np.zeros((b, n, d))
  out = []
  for step in range(t):
    x = xs[:, step]
    gate = lambda name: x @ p["i" + name]["kernel"] + h @ p["h" + name]["kernel"] + p["h" + name]["bias"]
    i, f, g, o = sigmoid(gate("i")), sigmoid(gate("f")), np.tanh(gate("g")), sigmoid(gate("o"))
    c = f * c + i * g
    h = o * np.tanh(c)
    out.append(h)
  return np.stack(out, axis=1)


def softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def space_stage(p, x, cfg):
  """One frame: x [B, N, D] -> [B, N, D]."""
  b, n, d = x.shape
  adj = graph_layout.adjacency(cfg.num_scales, cfg.image_dim).astype(np.float64)
  z = x
  if cfg.use_positional_emb:
    pe = graph_layout.positional_embedding(cfg.num_scales, cfg.dim_map).astype(np.float64)
    z = np.concatenate([x, np.broadcast_to(pe, (b,) + pe.shape)], axis=-1)
  pairs = np.empty((b, n, n, 2 * z.shape[-1]))
  for i in range(n):       # receiver
    for j in range(n):     # sender first in the pair
      pairs[:, i, j] = np.concatenate([z[:, j], z[:, i]], axis=-1)
  m = np.maximum(pairs @ p["send_conv1"]["kernel"] + p["send_conv1"]["bias"], 0)
  m = np.maximum(m @ p["send_conv2"]["kernel"] + p["send_conv2"]["bias"], 0)
  if cfg.use_norm == "LN":
    m = layer_norm(m, 3, p["message_ln"])
  neighbour = adj > 0
  if cfg.use_att == "dot":
    q = x @ p["att_conv1"]["kernel"] + p["att_conv1"]["bias"]
    k = x @ p["att_conv2"]["kernel"] + p["att_conv2"]["bias"]
    raw = np.einsum("bid,bjd->bij", q, k)
    logits = adj * raw if cfg.adjacency == "reference" else raw
  elif cfg.use_att == "simple":
    a = (x @ p["att_conv1"]["kernel"] + p["att_conv1"]["bias"])[..., 0]
    s = (x @ p["att_conv2"]["kernel"] + p["att_conv2"]["bias"])[..., 0]
    raw = a[:, :, None] + s[:, None, :]
    leaky = lambda v: np.where(v > 0, v, 0.2 * v)
    logits = leaky(adj * raw) + adj if cfg.adjacency == "reference" else leaky(raw)
  else:
    logits = np.zeros((b, n, n))
  if cfg.adjacency == "reference":
    alpha = softmax(logits)
  else:
    alpha = np.zeros((b, n, n))
    for i in range(n):
      nb = np.flatnonzero(neighbour[i])
      alpha[:, i, nb] = softmax(logits[:, i, nb])
  g = np.einsum("bij,bijm->bim", alpha, m) + p["att_bias"]
  if cfg.use_att == "simple" and cfg.use_norm == "LN":
    g = layer_norm(g, 2, p["att_ln"])
  g = np.maximum(g, 0)
  u = np.concatenate([x, g], axis=-1)
  out = np.empty((b, n, d))
  start = 0
  for t, s in enumerate(cfg.scales):
    suffix = f"_type{t + 1}" if cfg.scalewise_update else ""
    nodes = slice(start, start + s * s) if cfg.scalewise_update else slice(0, n)
    h = u[:, nodes]
    for layer in range(cfg.update_layers):
      w = p[f"update_conv{layer + 1}{suffix}"]
      h = np.maximum(h @ w["kernel"] + w["bias"], 0)
    out[:, nodes] = h
    start += s * s
    if not cfg.scalewise_update:
      break
  if cfg.use_norm == "LN":
    out = layer_norm(out, 2, p["update_ln"])
  return out


def rstg_graph(params, nodes, cfg, time_iters=(0, 1, 2)):
  """RSTGGraph (no projection, no BN) on a clip: nodes [B, T, N, D] -> O [B, T, N, D].

  `time_iters` lists the iterations that run the internal LSTM before their space stage;
  the default is the original's `time_iter_mom = [0, 1, 2]` (spec §6.2).
  """
  p = _np(params)
  z = np.asarray(nodes, np.float64)
  if cfg.use_norm == "LN":
    z = layer_norm(z, 3 if cfg.norm_scope == "clip" else 2, p["before_graf_ln"])
  cell = p["cell"]
  for k in range(cfg.num_process_iter):               # spec §6.2, literally
    y = lstm_sequence(cell["lstm_int"], z) if k in time_iters else z  # zero state
    z = np.stack([space_stage(cell["space"], y[:, t], cfg) for t in range(y.shape[1])], 1)
  return lstm_sequence(cell["lstm_ext"], z)
