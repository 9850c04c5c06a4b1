"""Our parameter paths <-> the original TF1 variable names (spec §11.1-§11.5).

One function, `source_for(key, info)`, says where a leaf of our variable tree comes
from in an original checkpoint: which TF variable and which layout change. Keys are
'collection/module/.../leaf', e.g. `params/backbone/res3_0/branch2a/kernel` or
`batch_stats/backbone/res_conv1_bn/mean`.

Scopes (spec §11.1):
  - I3D and Non-local models: `tower/resnet_i3d/`, C2D: `tower/resnet_c2d/`, SimpleConv
    (SyncMNIST): `tower/`;
  - backbone layers below `{root}/backbone/`, named by our module path joined by '_'
    (`res3_0/branch2a` -> `res3_0_branch2a`, `nonlocal_conv3_1/theta` ->
    `nonlocal_conv3_1_theta`);
  - graphs at res2..res5 in `{root}/backbone/whole_graph_model_{place}/`, the `final`
    graph in `{root}/whole_graph_model_final/`; their residual norm in the caller's
    scope: `{place}_after_graph_ln/beta` and `{place}_after_graph_ln_scale` (C2D:
    un-prefixed `after_graph_ln`, spec §14.20);
  - the head `{root}/pred`.

Layouts (spec §11.2, §11.5): conv3d kernels are already ours; conv1d [1, in, out] and
1x1 conv2d [1, 1, in, out] kernels and the head's 1x1x1 conv3d [1, 1, 1, C, K] are our
Dense kernels with leading ones; TF-contrib LN gamma/beta = scale/bias; BN
gamma/beta/moving_mean/moving_variance = scale/bias/mean/var. The cuDNN LSTMs come from
their canonical pair (TF gate order i, g, f, o; rows for x then h; one summed bias;
spec §11.4), or from the opaque cuDNN buffer when the pair is absent.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re

import numpy as np

# Tensors a checkpoint holds that no parameter takes, on purpose (spec §11.1, §11.7).
SKIP_RULES = (
    ("*/Momentum", "optimiser slot"),
    ("global_step", "training step counter"),
    ("*resize_filters__*", "resize filter: a constant, computed in closed form"),
)

LSTM_CANONICAL = "rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"
LSTM_OPAQUE = "opaque_kernel"
# Column blocks of the canonical kernel/bias (TF's LSTMCell order "icfo" = i, g, f, o).
TF_GATE_ORDER = ("i", "g", "f", "o")
# Weight matrices and biases of the opaque cuDNN buffer, in this order (spec §11.4).
CUDNN_GATE_ORDER = ("i", "f", "g", "o")
POSITIONAL_EMB = "tower/positional_emb"

_BN = {"scale": "gamma", "bias": "beta", "mean": "moving_mean", "var": "moving_variance"}
_LN = {"scale": "gamma", "bias": "beta"}


def skip_reason(name: str) -> str | None:
  """Why a source tensor is skipped on purpose, or None."""
  for pattern, reason in SKIP_RULES:
    if fnmatch.fnmatchcase(name, pattern):
      return reason
  return None


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What the naming depends on.

  Attributes:
    kind: 'smt' (C2D / I3D / Non-local ResNet) or 'syncmnist' (SimpleConv).
    backbone: 'i3d' or 'c2d' (Non-local models are I3D); 'simple' for SyncMNIST.
    use_att: the graphs' attention ('dot' or 'simple').
    scalewise_update: the graphs' node update.
  """
  kind: str
  backbone: str
  use_att: str = "dot"
  scalewise_update: bool = True

  @property
  def root(self) -> str:
    if self.kind == "syncmnist":
      return "tower"
    return f"tower/resnet_{self.backbone}"


@dataclasses.dataclass(frozen=True)
class Source:
  """Where one leaf of ours comes from.

  Attributes:
    name: the TF variable (for LSTM leaves: the canonical kernel or bias).
    layout: 'same'; 'squeeze' (the source has `lead` leading ones); 'head' (the 1x1x1
      conv of the classifier: leading ones, rows possibly reordered); 'lstm'.
    lead: number of leading ones for 'squeeze' / 'head'.
    lstm: for 'lstm': (layer prefix, gate, 'x' | 'h', 'kernel' | 'bias').
  """
  name: str
  layout: str = "same"
  lead: int = 0
  lstm: tuple[str, str, str, str] | None = None


class NamingError(ValueError):
  """A parameter of ours has no known original name."""


def _lstm_source(layer: str, rest: list[str]) -> Source:
  # rest = [gate module ('ii', 'hf', ...), leaf ('kernel' | 'bias')]
  (module, leaf) = rest
  side, gate = module[0], module[1]
  side = "x" if side == "i" else "h"
  tensor = f"{layer}/{LSTM_CANONICAL}/{'kernel' if leaf == 'kernel' else 'bias'}"
  return Source(tensor, "lstm", lstm=(layer, gate, side, leaf))


def _graph_source(rest: list[str], collection: str, scope: str, res_scope: str,
                  place: str, info: ModelInfo) -> Source:
  """A leaf of an RSTGBlock (`graph/...` or `residual/...`) -> its TF source."""
  head, *rest = rest
  if head == "residual":
    prefix = "" if info.backbone == "c2d" else f"{place}_"
    if rest == ["after_graph_ln", "bias"]:
      return Source(f"{res_scope}/{prefix}after_graph_ln/beta")
    if rest == ["after_graph_ln_scale"]:
      return Source(f"{res_scope}/{prefix}after_graph_ln_scale")
    raise NamingError("the original has no BatchNorm residual norm in any released "
                      "config (final_norm 'BN' cannot be imported)")
  if head != "graph":
    raise NamingError(f"unknown graph block part {head!r}")
  g = f"{scope}/whole_graph_model_{place}"
  part, *rest = rest
  if part in ("project_i3d", "project_back_to_i3d"):
    return Source(f"{g}/{part}/{rest[-1]}")
  if part == "batch_normalization":
    return Source(f"{g}/batch_normalization/{_BN[rest[-1]]}")
  if part in ("before_graf_ln", "before_graf_bn"):
    table = _LN if part.endswith("_ln") else _BN
    return Source(f"{g}/{part}/{table[rest[-1]]}")
  if part != "cell":
    raise NamingError(f"unknown graph part {part!r}")
  sub, *rest = rest
  if sub == "lstm_int":
    return _lstm_source(f"{g}/cudnn_lstm", rest)
  if sub == "lstm_ext":
    return _lstm_source(f"{g}/time_update_extern/cudnn_lstm", rest)
  if sub != "space":
    raise NamingError(f"unknown graph cell part {sub!r}")
  layer, *rest = rest
  att = f"{g}/{'dot_product_attn' if info.use_att == 'dot' else 'my_attn'}"
  upd = f"{g}/{'update_node_mlp_' if info.scalewise_update else 'update_node_mlp'}"
  if layer in ("send_conv1", "send_conv2"):
    name = f"{g}/send_messages_mlp/{layer}/{rest[-1]}"
    return Source(name, "squeeze", 2) if rest[-1] == "kernel" else Source(name)
  if layer == "message_ln":
    return Source(f"{g}/send_messages_mlp/message_ln/{_LN[rest[-1]]}")
  if layer in ("att_conv1", "att_conv2"):
    name = f"{att}/{layer}/{rest[-1]}"
    return Source(name, "squeeze", 1) if rest[-1] == "kernel" else Source(name)
  if layer == "att_bias":
    return Source(f"{att}/att_bias/biases")
  if layer in ("att_ln", "att_bn"):
    table = _LN if layer == "att_ln" else _BN
    return Source(f"{att}/{layer}/{table[rest[-1]]}")
  if layer.startswith("update_conv"):
    name = f"{upd}/{layer}/{rest[-1]}"
    return Source(name, "squeeze", 1) if rest[-1] == "kernel" else Source(name)
  if layer in ("update_ln", "update_bn"):
    table = _LN if layer == "update_ln" else _BN
    return Source(f"{upd}/{layer}/{table[rest[-1]]}")
  raise NamingError(f"unknown space-stage layer {layer!r}")


_STAGE_BLOCK = re.compile(r"^(res\d+_\d+|nonlocal_conv\d+_\d+)$")


def _leaf_name(leaf: str, layer: str) -> str:
  if layer.endswith("_bn") or layer == "bn":
    return _BN[leaf]
  return leaf


def source_for(key: str, info: ModelInfo) -> Source:
  """The TF source of our leaf `key` ('params/...' or 'batch_stats/...').

  Raises:
    NamingError: the leaf has no original counterpart.
  """
  collection, *parts = key.split("/")
  root = info.root
  if parts[0] == "pred":
    return Source(f"{root}/pred/{parts[1]}", "head", 3 if parts[1] == "kernel" else 0)
  if info.kind == "syncmnist":
    if parts[0] == "backbone" and re.fullmatch(r"conv\d+", parts[1]):
      index = int(parts[1][4:]) - 1  # ours conv1..3, the original's conv0..2
      return Source(f"{root}/conv{index}/conv2d/{parts[2]}")
    if parts[0] == "graph":
      return _graph_source(parts[1:], collection, root, root, "final", info)
    raise NamingError("the original SyncMNIST model has no such layer (only the "
                      "paper's 'rstg' model with combine='serial' and "
                      "residual_norm='none' exists as a checkpoint)")
  if parts[0] == "graph_final":
    return _graph_source(parts[1:], collection, root, root, "final", info)
  if parts[0] != "backbone":
    raise NamingError(f"unknown top-level module {parts[0]!r}")
  b = f"{root}/backbone"
  mod, *rest = parts[1:]
  if mod.startswith("graph_"):
    return _graph_source(rest, collection, b, b, mod[len("graph_"):], info)
  if mod in ("conv1", "res_conv1_bn"):
    return Source(f"{b}/{mod}/{_leaf_name(rest[-1], mod)}")
  if _STAGE_BLOCK.match(mod) and len(rest) == 2:
    layer, leaf = rest
    return Source(f"{b}/{mod}_{layer}/{_leaf_name(leaf, layer)}")
  raise NamingError(f"unknown backbone layer {mod!r}")


def lstm_from_canonical(kernel: np.ndarray, bias: np.ndarray, in_features: int
                        ) -> dict[str, np.ndarray]:
  """The canonical pair -> our `{ii,...,ho}/kernel` and `h?/bias` (spec §11.4)."""
  units = kernel.shape[1] // 4
  out = {}
  for block, gate in enumerate(TF_GATE_ORDER):
    cols = slice(block * units, (block + 1) * units)
    out[f"i{gate}/kernel"] = kernel[:in_features, cols]
    out[f"h{gate}/kernel"] = kernel[in_features:, cols]
    out[f"h{gate}/bias"] = bias[cols]
  return out


def opaque_size(in_features: int, units: int) -> int:
  return 4 * units * in_features + 4 * units * units + 8 * units


def lstm_from_opaque(buf: np.ndarray, in_features: int, units: int
                     ) -> dict[str, np.ndarray]:
  """The opaque cuDNN buffer -> our LSTM leaves (fallback; layout of spec §11.4).

  W_i, W_f, W_g, W_o [units, in], R_i, R_f, R_g, R_o [units, units] (row-major), then
  the 8 biases in the same order; input and recurrent biases are summed.
  """
  buf = np.asarray(buf).reshape(-1)
  if buf.size != opaque_size(in_features, units):
    raise ValueError(f"opaque buffer has {buf.size} values, expected "
                     f"{opaque_size(in_features, units)} for input {in_features}, "
                     f"units {units}")
  out, pos = {}, 0
  for side, width in (("i", in_features), ("h", units)):
    for gate in CUDNN_GATE_ORDER:
      n = units * width
      out[f"{side}{gate}/kernel"] = buf[pos:pos + n].reshape(units, width).T
      pos += n
  biases = {}
  for side in ("w", "r"):
    for gate in CUDNN_GATE_ORDER:
      biases[side + gate] = buf[pos:pos + units]
      pos += units
  for gate in CUDNN_GATE_ORDER:
    out[f"h{gate}/bias"] = biases["w" + gate] + biases["r" + gate]
  return out
