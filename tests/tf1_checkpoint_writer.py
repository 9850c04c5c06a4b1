"""Writes TF1 checkpoints in the original RSTG format, for the import tests.

The variable list is derived from spec §11.1-§11.4 (names, shapes, scopes), never from
rstg_jax: a naming mistake on either side then shows up as an unconsumed tensor or an
unfilled parameter. Values are random (BatchNorm variances positive); the positional
embedding holds its true Gaussian values (spec §3.3), since our model computes it.
Checkpoints are written with `tf.compat.v1` variables and `tf.compat.v1.train.Saver`
in graph mode, including `global_step`, a `Momentum` slot per trainable variable, a
resize filter, and the cuDNN LSTMs as their opaque buffer plus the canonical pair.
"""
from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np

# I3D-R50 temporal inflation per stage (spec §8.2); shorter stages use a prefix.
I3D_INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
LSTM_CELL = "rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"


@dataclasses.dataclass(frozen=True)
class OriginalModel:
  """A released model's structure, in the original's terms."""
  backbone: str = "i3d"                 # 'i3d' | 'c2d' | 'nonlocal' | 'simple'
  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  width: int = 64                       # res2 inner width; SimpleConv filters
  num_classes: int = 174
  place_graph: tuple[str, ...] = ()     # 'final', 'res3', 'res4'
  place_nonlocal: tuple[str, ...] = ()  # 'res3', 'res4'
  graph_dim: int = 512
  use_att: str = "dot"
  scalewise: bool = True
  use_norm: str = "LN"
  pre_graph_bn: bool = False
  use_pe: bool = False
  final_norm: str = "LN"

  @property
  def root(self) -> str:
    if self.backbone == "simple":
      return "tower"
    return "tower/resnet_c2d" if self.backbone == "c2d" else "tower/resnet_i3d"

  def stage_out(self, r: int) -> int:
    return 4 * self.width * 2 ** (r - 2)

  def channels_at(self, place: str) -> int:
    if self.backbone == "simple":
      return self.width
    return self.stage_out(5) if place == "final" else self.stage_out(int(place[3:]))


def _bn(prefix: str, c: int) -> dict:
  return {f"{prefix}/{n}": (c,) for n in ("gamma", "beta", "moving_mean", "moving_variance")}


def backbone_variables(m: OriginalModel) -> dict[str, tuple[int, ...]]:
  """Spec §11.2 (and §8.2-§8.4 for the shapes)."""
  if m.backbone == "simple":
    v = {}
    cin = 1
    for i in range(3):
      v[f"tower/conv{i}/conv2d/kernel"] = (3, 3, cin, m.width)
      v[f"tower/conv{i}/conv2d/bias"] = (m.width,)
      cin = m.width
    return v
  b = f"{m.root}/backbone"
  kt = 1 if m.backbone == "c2d" else 5
  v = {f"{b}/conv1/kernel": (kt, 7, 7, 3, m.width)}
  v.update(_bn(f"{b}/res_conv1_bn", m.width))
  cin = m.width
  for si, n in enumerate(m.stage_sizes):
    r = si + 2
    inner, out = m.width * 2 ** si, m.stage_out(r)
    for blk in range(n):
      u = I3D_INFLATE[si][blk] if m.backbone != "c2d" else 0
      p = f"{b}/res{r}_{blk}"
      v[f"{p}_branch2a/kernel"] = (1 + 2 * u, 1, 1, cin, inner)
      v.update(_bn(f"{p}_branch2a_bn", inner))
      v[f"{p}_branch2b/kernel"] = (1, 3, 3, inner, inner)
      v.update(_bn(f"{p}_branch2b_bn", inner))
      v[f"{p}_branch2c/kernel"] = (1, 1, 1, inner, out)
      v.update(_bn(f"{p}_branch2c_bn", out))
      if blk == 0:
        v[f"{p}_branch1/kernel"] = (1, 1, 1, cin, out)
        v.update(_bn(f"{p}_branch1_bn", out))
      cin = out
      if f"res{r}" in m.place_nonlocal and blk % 2 == 1:
        q = f"{b}/nonlocal_conv{r}_{blk}"
        for part in ("theta", "phi", "g"):
          v[f"{q}_{part}/kernel"] = (1, 1, 1, out, out // 2)
          v[f"{q}_{part}/bias"] = (out // 2,)
        v[f"{q}_out/kernel"] = (1, 1, 1, out // 2, out)
        v[f"{q}_out/bias"] = (out,)
        v.update(_bn(f"{q}_bn", out))
  return v


def lstm_variables(prefix: str, d: int) -> dict[str, tuple[int, ...]]:
  return {f"{prefix}/opaque_kernel": (8 * d * d + 8 * d,),
          f"{prefix}/{LSTM_CELL}/kernel": (2 * d, 4 * d),
          f"{prefix}/{LSTM_CELL}/bias": (4 * d,)}


def graph_variables(m: OriginalModel, place: str) -> dict[str, tuple[int, ...]]:
  """Spec §11.3 for the graph at `place`."""
  d, c = m.graph_dim, m.channels_at(place)
  scope = m.root if place == "final" else f"{m.root}/backbone"
  g = f"{scope}/whole_graph_model_{place}"
  v = {}
  if c != d:
    v[f"{g}/project_i3d/kernel"] = (c, d)
    v[f"{g}/project_i3d/bias"] = (d,)
    v[f"{g}/project_back_to_i3d/kernel"] = (d, c)
    v[f"{g}/project_back_to_i3d/bias"] = (c,)
  if m.pre_graph_bn:
    v.update(_bn(f"{g}/batch_normalization", d))
  ln = m.use_norm == "LN"
  if ln:
    v[f"{g}/before_graf_ln/beta"] = v[f"{g}/before_graf_ln/gamma"] = (d,)
  v.update(lstm_variables(f"{g}/cudnn_lstm", d))
  v.update(lstm_variables(f"{g}/time_update_extern/cudnn_lstm", d))
  pe = 36 if m.use_pe else 0
  s = f"{g}/send_messages_mlp"
  v[f"{s}/send_conv1/kernel"] = (1, 1, 2 * (d + pe), d)
  v[f"{s}/send_conv1/bias"] = (d,)
  v[f"{s}/send_conv2/kernel"] = (1, 1, d, d)
  v[f"{s}/send_conv2/bias"] = (d,)
  if ln:
    v[f"{s}/message_ln/beta"] = v[f"{s}/message_ln/gamma"] = (d,)
  if m.use_att == "dot":
    a, width = f"{g}/dot_product_attn", d
  else:
    a, width = f"{g}/my_attn", 1
  for k in ("att_conv1", "att_conv2"):
    v[f"{a}/{k}/kernel"] = (1, d, width)
    v[f"{a}/{k}/bias"] = (width,)
  v[f"{a}/att_bias/biases"] = (d,)
  if m.use_att == "simple" and ln:
    v[f"{a}/att_ln/beta"] = v[f"{a}/att_ln/gamma"] = (d,)
  u = f"{g}/update_node_mlp_" if m.scalewise else f"{g}/update_node_mlp"
  for t in ((1, 2, 3) if m.scalewise else (None,)):
    suffix = f"_type{t}" if t else ""
    v[f"{u}/update_conv1{suffix}/kernel"] = (1, 2 * d, d)
    v[f"{u}/update_conv1{suffix}/bias"] = (d,)
    v[f"{u}/update_conv2{suffix}/kernel"] = (1, d, d)
    v[f"{u}/update_conv2{suffix}/bias"] = (d,)
  if ln:
    v[f"{u}/update_ln/beta"] = v[f"{u}/update_ln/gamma"] = (d,)
  if m.backbone != "simple" and m.final_norm == "LN":
    prefix = "" if m.backbone == "c2d" else f"{place}_"
    v[f"{scope}/{prefix}after_graph_ln/beta"] = (c,)
    v[f"{scope}/{prefix}after_graph_ln_scale"] = (c,)
  return v


def model_variables(m: OriginalModel) -> dict[str, tuple[int, ...]]:
  """Every variable a released checkpoint of `m` restores (without slots)."""
  v = backbone_variables(m)
  for place in m.place_graph:
    v.update(graph_variables(m, place))
  if m.use_pe:
    v["tower/positional_emb"] = (14, 36)
  c = m.channels_at("final")
  v[f"{m.root}/pred/kernel"] = (1, 1, 1, c, m.num_classes)
  v[f"{m.root}/pred/bias"] = (m.num_classes,)
  return v


def gaussian_positional_embedding() -> np.ndarray:
  """Spec §3.3, dim_map 6, scales (3, 2, 1): [14, 36]."""
  rows = []
  for s in (3, 2, 1):
    k = 6 // s
    n = np.arange(k) - (k - 1) / 2.0
    g = np.exp(-0.5 * (n / 2.0) ** 2)
    for r in range(s):
      for c in range(s):
        m = np.zeros((6, 6))
        m[r * k:(r + 1) * k, c * k:(c + 1) * k] = np.outer(g, g)
        rows.append(m.reshape(-1))
  return np.stack(rows).astype(np.float32)


def canonical_to_opaque(kernel: np.ndarray, bias: np.ndarray, rng) -> np.ndarray:
  """The cuDNN buffer holding the same LSTM (biases split at random into W and R)."""
  d = kernel.shape[1] // 4
  n_in = kernel.shape[0] - d
  blocks = {gate: slice(i * d, (i + 1) * d) for i, gate in enumerate("igfo")}
  mats, b_w, b_r = [], [], []
  for rows in (slice(0, n_in), slice(n_in, None)):
    for gate in "ifgo":
      mats.append(kernel[rows, blocks[gate]].T.reshape(-1))  # [units, in] row-major
  for gate in "ifgo":
    b = bias[blocks[gate]]
    part = rng.normal(size=b.shape).astype(np.float32)
    b_w.append(part)
    b_r.append(b - part)
  return np.concatenate(mats + b_w + b_r).astype(np.float32)


def random_values(shapes: dict[str, tuple[int, ...]], seed: int = 0
                  ) -> dict[str, np.ndarray]:
  """Random tensors with sane scales; consistent opaque/canonical LSTM pairs."""
  rng = np.random.default_rng(seed)
  out = {}
  for name in sorted(shapes):
    shape = shapes[name]
    leaf = name.rsplit("/", 1)[-1]
    if name == "tower/positional_emb":
      v = gaussian_positional_embedding()
    elif leaf in ("moving_variance", "gamma"):
      v = rng.uniform(0.5, 1.5, shape)
    elif leaf in ("beta", "moving_mean", "bias", "biases"):
      v = rng.normal(0, 0.1, shape)
    elif leaf.endswith("after_graph_ln_scale"):
      v = rng.normal(0, 1.0, shape)
    elif leaf == "opaque_kernel":
      continue
    else:  # kernels: variance 1 / fan-in
      fan_in = int(np.prod(shape[:-1]))
      v = rng.normal(0, 1.0 / np.sqrt(fan_in), shape)
    out[name] = np.asarray(v, np.float32)
  for name in shapes:
    if name.endswith("/opaque_kernel"):
      prefix = name[: -len("/opaque_kernel")]
      out[name] = canonical_to_opaque(out[f"{prefix}/{LSTM_CELL}/kernel"],
                                      out[f"{prefix}/{LSTM_CELL}/bias"], rng)
  return out


def training_extras(m: OriginalModel, values: dict[str, np.ndarray], map_hw: int = 14
                    ) -> dict[str, np.ndarray]:
  """What a training checkpoint also holds: global_step, Momentum slots, resize filters."""
  extra = {"global_step": np.asarray(12345, np.int64)}
  for name, v in values.items():
    trainable = not (name.endswith(("moving_mean", "moving_variance"))
                     or name == "tower/positional_emb" or f"/{LSTM_CELL}/" in name)
    if trainable:
      extra[f"{name}/Momentum"] = np.zeros_like(v)
  if m.place_graph:
    scope = m.root
    extra[f"{scope}/graph_input/resize/resize_filters__{map_hw}_{map_hw}_3x3"] = \
        np.zeros((3, 3, map_hw, map_hw), np.float32)
  return extra


def write_tf1_checkpoint(prefix: str, tensors: dict[str, np.ndarray]) -> str:
  """Saves `tensors` under their names with a TF1 Saver (graph mode); returns prefix."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  graph = tf.Graph()
  with graph.as_default():
    var_list, feeds, assigns = {}, {}, []
    for name, value in tensors.items():
      var = tf.compat.v1.get_variable(
          name, shape=value.shape, dtype=tf.as_dtype(value.dtype),
          initializer=tf.compat.v1.zeros_initializer(), use_resource=False)
      ph = tf.compat.v1.placeholder(tf.as_dtype(value.dtype), value.shape)
      assigns.append(tf.compat.v1.assign(var, ph))
      feeds[ph] = value
      var_list[name] = var
    saver = tf.compat.v1.train.Saver(var_list=var_list)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(assigns, feed_dict=feeds)
      return saver.save(sess, prefix, write_meta_graph=False, write_state=False)


def to_caffe2_blobs(values: dict[str, np.ndarray], root: str) -> dict[str, np.ndarray]:
  """video-nonlocal-net blobs of a TF-named backbone (weights [out, in, kT, kH, kW])."""
  blobs = {}
  bn_suffix = {"gamma": "s", "beta": "b", "moving_mean": "rm", "moving_variance": "riv"}
  for name, v in values.items():
    if not name.startswith(root + "/"):
      continue
    rel = name[len(root) + 1:]
    if rel.startswith("pred/"):
      blobs["pred_w" if rel.endswith("kernel") else "pred_b"] = (
          v.reshape(v.shape[-2], v.shape[-1]).T if rel.endswith("kernel") else v)
      continue
    layer, leaf = rel[len("backbone/"):].rsplit("/", 1)
    if leaf in bn_suffix:
      blobs[f"{layer}_{bn_suffix[leaf]}"] = v
    elif leaf == "kernel":
      blobs[f"{layer}_w"] = v.transpose(4, 3, 0, 1, 2)
    else:
      blobs[f"{layer}_b"] = v
  return blobs


def write_caffe2_pickle(path: str, blobs: dict[str, np.ndarray]) -> str:
  with open(path, "wb") as f:
    pickle.dump({"blobs": dict(blobs, **{k + "_momentum": np.zeros_like(v)
                                        for k, v in list(blobs.items())[:3]})}, f)
  return path
