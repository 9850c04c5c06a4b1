"""Imports an original RSTG checkpoint (TF1) or a video-nonlocal-net Kinetics backbone
(Caffe2 pickle) into a checkpoint of one of our configs.

  python -m rstg_jax.tools.import_checkpoint --config=configs/smt_i3d_rstg_final.py \\
      --source=/ckpts/i3d_rstg_final/model.ckpt-NNNN --out=runs/i3d_rstg_final \\
      --class_names=/data/something-something-v1-labels.csv
  python -m rstg_jax.tools.import_checkpoint --config=configs/smt_i3d_rstg_final.py \\
      --source=i3d_baseline_32x2_IN_pretrain_400k.pkl --out=runs/ft \\
      --allow_missing=graph

Every tensor of the source must be consumed by a parameter or batch statistic of the
config's model, or be skipped on purpose (optimiser `*/Momentum` slots, `global_step`,
resize filters, the opaque cuDNN buffer when its canonical pair is used, a 400-class
Kinetics head when the target has another width); every parameter must be filled
(`--allow_missing` names what may stay at its initial value, e.g. `head`, `graph`, or
glob patterns over our parameter paths); shapes must agree. Everything wrong is
reported at once, before anything is written.

`--out=DIR` is laid out like a training workdir: `DIR/checkpoints/0/` holds a complete
TrainState at step 0 (params, batch_stats, and a fresh optimiser state of the config's
optimiser), so `--workdir=DIR` resumes from it and `load_imported(DIR)` reads the
variables without knowing the optimiser; the checkpoint's meta and
`DIR/import_report.json` record the source, the class order of the head rows and the
whole mapping table.

Head rows: the original checkpoints order their 174 rows as
`rstg_datasets/smt_common/ssv1_class_order_of_original_checkpoints.txt`. With
`--class_names` (a v1 labels CSV, one name per line, or a v2 labels JSON) the rows are
reordered by class name into that label order, so that the model predicts our dataset
builder's label ids; without it the checkpoint order is kept (and recorded).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import sys
from typing import Any, Sequence

from absl import app
from absl import flags
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rstg_jax.tools import caffe2_names
from rstg_jax.tools import tf_names

KINETICS_CLASSES = 400
REPORT_FILE = "import_report.json"
ALIASES = {"head": ("pred/*",), "graph": ("graph*", "backbone/graph_*")}


class CheckpointImportError(ValueError):
  """The source does not fit the config's model (the message lists every problem)."""


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass
class BuiltModel:
  model: Any
  info: tf_names.ModelInfo
  init_shape: tuple[int, ...]   # an input that initialises every parameter
  uses_positional_emb: bool


def _build_model(config: ml_collections.ConfigDict) -> BuiltModel:
  """The config's model and what its original names depend on.

  The one place that knows the config schema (SyncMNIST: configs/syncmnist_*.py,
  Something-Something: configs/smt_*.py).
  """
  if config.task == "sync_mnist":
    from rstg_jax.models.classifiers import syncmnist_model  # pylint: disable=g-import-not-at-top
    m = config.model
    problems = []
    if m.head != "rstg":
      problems.append(f"config.model.head={m.head!r} (only 'rstg' has an original)")
    if m.combine != "serial":
      problems.append(f"config.model.combine={m.combine!r} (the original is 'serial')")
    if m.residual_norm != "none":
      problems.append(f"config.model.residual_norm={m.residual_norm!r} (the original "
                      "has none)")
    if problems:
      raise CheckpointImportError(
          "this SyncMNIST config has no original checkpoint: " + "; ".join(problems))
    g = m.graph
    info = tf_names.ModelInfo("syncmnist", "simple", g.use_att, g.scalewise_update)
    return BuiltModel(syncmnist_model.build_model(m), info, (1, 10, 64, 64, 1),
                      bool(g.use_positional_emb))
  from rstg_jax.models.classifiers import smt_model  # pylint: disable=g-import-not-at-top
  m = config.model
  g = m.graph
  info = tf_names.ModelInfo("smt", m.backbone, g.use_att, g.scalewise_update)
  places = smt_model.parse_places(m.place_graph, smt_model.GRAPH_PLACES, "place_graph")
  if m.backbone == "c2d" and len(places) > 1:
    raise CheckpointImportError(
        f"place_graph={m.place_graph!r}: the original C2D names every residual norm "
        "'after_graph_ln' without a prefix, so it cannot hold more than one graph")
  return BuiltModel(smt_model.build_model(config.model), info, (1, 8, 64, 64, 3),
                    bool(places) and bool(g.use_positional_emb))


def _make_tx(config: ml_collections.ConfigDict):
  from rstg_jax.train import optimizers  # pylint: disable=g-import-not-at-top
  lr = optimizers.learning_rate_schedule(config.optimizer, int(config.num_train_steps))
  return optimizers.make_optimizer(config.optimizer, lr)


def _flat(tree: Any) -> dict[str, Any]:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")


def _init_fn(built: BuiltModel, seed: int):
  def init():
    # Only parameters the source does not fill keep these values; the 'rbg' generator
    # compiles much faster on CPU than threefry for a whole ResNet.
    rng = jax.random.key(seed, impl="rbg")
    return built.model.init({"params": rng, "dropout": rng},
                            jnp.zeros(built.init_shape, jnp.float32), train=False)
  return init


# ---------------------------------------------------------------------------- source


@dataclasses.dataclass
class SourceTensors:
  """Tensors of a checkpoint by TF name; read lazily for TF1."""
  path: str
  format: str                        # 'tf1' | 'caffe2'
  shapes: dict[str, tuple[int, ...]]
  origin: dict[str, str]             # TF name -> name in the file (Caffe2 blob)
  skipped_in_file: dict[str, str]    # file names skipped before mapping
  _get: Any = None

  def get(self, name: str) -> np.ndarray:
    return np.asarray(self._get(name))

  def label(self, name: str) -> str:
    src = self.origin.get(name)
    return name if src is None or src == name else f"{src} (as {name})"


def read_source(path: str, root: str) -> SourceTensors:
  """Opens a TF1 checkpoint prefix (or a folder with a `checkpoint` file) or a .pkl."""
  if path.endswith((".pkl", ".pickle")):
    if not os.path.isfile(path):
      raise CheckpointImportError(f"--source={path}: no such file")
    try:
      blobs = caffe2_names.load_blobs(path)
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointImportError(f"--source={path}: cannot read the pickle: {e}") from e
    tensors, origin, skipped = caffe2_names.to_tf(blobs, root)
    return SourceTensors(path, "caffe2", {k: v.shape for k, v in tensors.items()},
                         origin, skipped, tensors.__getitem__)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = path
  if os.path.isdir(path):
    prefix = tf.train.latest_checkpoint(path)
    if prefix is None:
      raise CheckpointImportError(f"--source={path}: a folder without a TF checkpoint")
  if not os.path.exists(prefix + ".index"):
    raise CheckpointImportError(
        f"--source={path}: neither a TF1 checkpoint prefix (no {prefix}.index) nor a "
        "Caffe2 .pkl")
  try:
    reader = tf.train.load_checkpoint(prefix)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointImportError(f"--source={path}: cannot read the checkpoint: {e}") from e
  shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}
  return SourceTensors(prefix, "tf1", shapes, {}, {}, reader.get_tensor)


# ----------------------------------------------------------------------- class names


def read_class_names(path: str) -> list[str]:
  """Names in label-id order from a v1 labels CSV/TXT (one per line) or v2 JSON."""
  if not os.path.isfile(path):
    raise CheckpointImportError(f"--class_names={path}: no such file")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if path.endswith(".json"):
    try:
      table = json.loads(text)
      return [name for name, _ in sorted(table.items(), key=lambda kv: int(kv[1]))]
    except (ValueError, AttributeError) as e:
      raise CheckpointImportError(
          f"--class_names={path}: not a labels JSON {{name: id}}: {e}") from e
  return [line.strip() for line in text.splitlines() if line.strip()]


def _checkpoint_class_names() -> list[str]:
  from rstg_datasets.smt_common import class_names  # pylint: disable=g-import-not-at-top
  return class_names.checkpoint_class_names()


# --------------------------------------------------------------------------- mapping


def _allowed(key: str, patterns: Sequence[str]) -> bool:
  rel = key.split("/", 1)[1]
  for p in patterns:
    for q in ALIASES.get(p, (p,)):
      if fnmatch.fnmatchcase(rel, q) or fnmatch.fnmatchcase(key, q) or \
          fnmatch.fnmatchcase(rel, q + "/*"):
        return True
  return False


def _expected_shape(src: tf_names.Source, target: tuple[int, ...]) -> tuple[int, ...]:
  if src.layout in ("squeeze", "head"):
    return (1,) * src.lead + tuple(target)
  return tuple(target)


@dataclasses.dataclass
class ImportResult:
  variables: dict[str, Any]          # {'params': ..., 'batch_stats': ...} nested numpy
  rows: list[dict[str, Any]]         # the mapping table
  skipped: dict[str, str]            # source tensor -> reason
  initialised: list[str]             # our keys left at their initial value
  class_names: list[str] | None      # names of the head rows, in row order
  head_order: str
  num_params_imported: int
  num_source_tensors: int

  def counts(self) -> dict[str, int]:
    consumed = {r["source"] for r in self.rows}
    return {"source_tensors": self.num_source_tensors, "consumed": len(consumed),
            "skipped": len(self.skipped), "initialised": len(self.initialised),
            "target_leaves": len(self.rows) + len(self.initialised),
            "parameters_imported": self.num_params_imported}


def convert(built: BuiltModel, source: SourceTensors, *, seed: int = 0,
            allow_missing: Sequence[str] = (),
            target_class_names: Sequence[str] | None = None) -> ImportResult:
  """Maps `source` onto the model's variables; raises CheckpointImportError listing
  every unconsumed tensor, unfilled parameter and shape mismatch."""
  info = built.info
  shapes = {k: tuple(v.shape) for k, v in
            _flat(jax.eval_shape(_init_fn(built, seed))).items()}
  errors: list[str] = []
  values: dict[str, np.ndarray] = {}
  rows: list[dict[str, Any]] = []
  consumed: set[str] = set()
  skipped: dict[str, str] = dict(source.skipped_in_file)
  missing: list[str] = []
  lstm_leaves: dict[str, list[tuple[str, tf_names.Source]]] = {}
  head: dict[str, str] = {}

  for key in sorted(shapes):
    try:
      src = tf_names.source_for(key, info)
    except tf_names.NamingError as e:
      if _allowed(key, allow_missing):
        missing.append(key)
      else:
        errors.append(f"parameter {key} {shapes[key]} has no original counterpart: {e}")
      continue
    if src.layout == "lstm":
      lstm_leaves.setdefault(src.lstm[0], []).append((key, src))
      continue
    if src.layout == "head":
      head[key.rsplit("/", 1)[1]] = key
    if src.name not in source.shapes:
      missing.append(key)
      continue
    want = _expected_shape(src, shapes[key])
    have = source.shapes[src.name]
    if src.layout == "head" and len(have) == len(want) and have[:-1] == want[:-1] \
        and have[-1] != want[-1]:
      pass  # class count: decided below with the whole head
    elif have != want:
      errors.append(f"shape mismatch: {source.label(src.name)} is {have}, parameter "
                    f"{key} needs {want}")
      consumed.add(src.name)
      continue
    consumed.add(src.name)
    values[key] = src
    rows.append({"source": src.name, "source_shape": list(have), "target": key,
                 "target_shape": list(shapes[key]), "layout": src.layout})

  # cuDNN LSTMs: the canonical pair, else the opaque buffer.
  for layer, leaves in sorted(lstm_leaves.items()):
    kernel_name = f"{layer}/{tf_names.LSTM_CANONICAL}/kernel"
    bias_name = f"{layer}/{tf_names.LSTM_CANONICAL}/bias"
    opaque_name = f"{layer}/{tf_names.LSTM_OPAQUE}"
    keys = {"/".join(key.split("/")[-2:]): key for key, _ in leaves}  # 'ii/kernel' ...
    units = shapes[keys["hi/kernel"]][1]
    in_features = shapes[keys["ii/kernel"]][0]
    have_pair = kernel_name in source.shapes and bias_name in source.shapes
    if have_pair:
      bad = False
      for name, want in ((kernel_name, (in_features + units, 4 * units)),
                         (bias_name, (4 * units,))):
        if source.shapes[name] != want:
          errors.append(f"shape mismatch: {source.label(name)} is {source.shapes[name]}, "
                        f"the LSTM {layer} needs {want}")
          bad = True
      consumed.update((kernel_name, bias_name))
      if opaque_name in source.shapes:
        skipped[opaque_name] = "opaque cuDNN buffer; its canonical pair was used"
      if bad:
        continue
      arrays = tf_names.lstm_from_canonical(source.get(kernel_name), source.get(bias_name),
                                            in_features)
      origin = (kernel_name, bias_name)
    elif opaque_name in source.shapes:
      consumed.add(opaque_name)
      size = tf_names.opaque_size(in_features, units)
      if int(np.prod(source.shapes[opaque_name])) != size:
        errors.append(f"shape mismatch: {source.label(opaque_name)} is "
                      f"{source.shapes[opaque_name]}, the LSTM {layer} needs ({size},)")
        continue
      arrays = tf_names.lstm_from_opaque(source.get(opaque_name), in_features, units)
      origin = (opaque_name, opaque_name)
    else:
      missing.extend(key for key, _ in leaves)
      continue
    for rel, key in keys.items():
      name = origin[0] if rel.endswith("kernel") else origin[1]
      values[key] = arrays[rel]
      rows.append({"source": name, "source_shape": list(source.shapes[name]),
                   "target": key, "target_shape": list(shapes[key]),
                   "layout": "lstm-canonical" if have_pair else "lstm-opaque"})

  # The head: class count, Kinetics heads, row order.
  class_names, head_order = None, "none"
  kernel_key = head.get("kernel")
  head_src = {k: values.get(v) for k, v in head.items()}
  if kernel_key and isinstance(head_src.get("kernel"), tf_names.Source):
    k_src = source.shapes[head_src["kernel"].name][-1]
    k_tgt = shapes[kernel_key][-1]
    if k_src != k_tgt:
      if k_src == KINETICS_CLASSES:
        for part, key in head.items():
          src = values.pop(key, None)
          if isinstance(src, tf_names.Source):
            skipped[src.name] = (f"{KINETICS_CLASSES}-class Kinetics head, the target "
                                 f"has {k_tgt} classes: {key} is initialised afresh")
            consumed.discard(src.name)
          missing.append(key)
          rows[:] = [r for r in rows if r["target"] != key]
          allow_missing = tuple(allow_missing) + ("head",)
        head_order = "re-initialised (Kinetics head dropped)"
      else:
        errors.append(f"shape mismatch: {source.label(head_src['kernel'].name)} has "
                      f"{k_src} classes, parameter {kernel_key} needs {k_tgt}")
    elif info.kind == "smt" and source.format == "tf1" and k_src == 174:
      ckpt_names = _checkpoint_class_names()
      if target_class_names is None:
        class_names, head_order = ckpt_names, "checkpoint (no --class_names given)"
      else:
        from rstg_datasets.smt_common import class_names as cn  # pylint: disable=g-import-not-at-top
        try:
          rows_for_labels = cn.checkpoint_rows_for_labels(list(target_class_names))
        except ValueError as e:
          raise CheckpointImportError(f"--class_names: {e}") from e
        class_names, head_order = list(target_class_names), "labels (reordered by name)"
        for part, key in head.items():
          values[key] = ("reorder", values[key], rows_for_labels)
    else:
      head_order = "source"
  if target_class_names is not None and not head_order.startswith("labels"):
    head_order += " (--class_names ignored: no 174-row original head to reorder)"

  # The positional embedding: a constant of ours, checked against the checkpoint.
  if built.uses_positional_emb:
    name = tf_names.POSITIONAL_EMB
    if name not in source.shapes:
      errors.append(f"the model uses positional embeddings but the source has no {name}")
    else:
      from rstg_jax.models.graph import graph_layout  # pylint: disable=g-import-not-at-top
      g = (built.model.graph)
      want = graph_layout.positional_embedding(g.num_scales, g.dim_map)
      have = source.get(name)
      consumed.add(name)
      if have.shape != want.shape or not np.allclose(have, want, atol=1e-5):
        errors.append(f"{name} {have.shape} differs from the Gaussian embedding "
                      f"{want.shape} that the model computes (spec §3.3)")
      else:
        rows.append({"source": name, "source_shape": list(have.shape),
                     "target": "(constant, checked)", "target_shape": list(want.shape),
                     "layout": "verified"})

  for name in sorted(set(source.shapes) - consumed - set(skipped)):
    reason = tf_names.skip_reason(name)
    if reason:
      skipped[name] = reason
    else:
      errors.append(f"source tensor {source.label(name)} {source.shapes[name]} is not "
                    "consumed by any parameter of this model")
  not_allowed = [k for k in missing if not _allowed(k, allow_missing)]
  for key in not_allowed:
    src = tf_names.source_for(key, info)
    errors.append(f"parameter {key} {shapes[key]} is not filled: the source has no "
                  f"{src.name}")
  if errors:
    raise CheckpointImportError(
        f"cannot import {source.path} into this config ({len(errors)} problem(s)):\n  "
        + "\n  ".join(errors))

  init_values = {}
  if missing:
    init_values = _flat(jax.device_get(jax.jit(_init_fn(built, seed))()))
  flat = {}
  n_imported = 0
  for key in shapes:
    v = values.get(key)
    if key in missing:
      flat[key] = np.asarray(init_values[key])
      continue
    if isinstance(v, tuple) and v and v[0] == "reorder":
      arr = source.get(v[1].name).reshape(shapes[key][:-1] + (-1,))[..., v[2]]
    elif isinstance(v, tf_names.Source):
      arr = source.get(v.name).reshape(shapes[key])
    else:
      arr = v
    arr = np.asarray(arr, np.float32)
    assert arr.shape == shapes[key], (key, arr.shape, shapes[key])
    flat[key] = np.ascontiguousarray(arr)
    n_imported += arr.size
  variables = flax.traverse_util.unflatten_dict(
      {tuple(k.split("/")): v for k, v in flat.items()})
  return ImportResult(variables=variables, rows=rows, skipped=skipped,
                      initialised=sorted(missing), class_names=class_names,
                      head_order=head_order, num_params_imported=n_imported,
                      num_source_tensors=len(source.shapes) + len(source.skipped_in_file))


# ---------------------------------------------------------------------------- output


def format_table(result: ImportResult, source: SourceTensors) -> str:
  lines = [f"{'source tensor':<90} -> {'parameter':<70} shape"]
  for r in sorted(result.rows, key=lambda r: r["target"]):
    lines.append(f"{source.label(r['source']):<90} -> {r['target']:<70} "
                 f"{tuple(r['source_shape'])} [{r['layout']}]")
  for name, reason in sorted(result.skipped.items()):
    lines.append(f"{source.label(name):<90} -> (skipped: {reason})")
  for key in result.initialised:
    lines.append(f"{'(initialised)':<90} -> {key}")
  c = result.counts()
  lines.append(
      f"source tensors: {c['source_tensors']}, consumed {c['consumed']}, skipped "
      f"{c['skipped']}; parameters and statistics: {c['target_leaves']} leaves, "
      f"{c['initialised']} initialised afresh, {c['parameters_imported']:,} values "
      f"imported; head rows: {result.head_order}")
  return "\n".join(lines)


def write_import(out_dir: str, config: ml_collections.ConfigDict, built: BuiltModel,
                 result: ImportResult, source: SourceTensors) -> str:
  """Writes DIR/checkpoints/0 (a TrainState) and DIR/import_report.json."""
  from rstg_jax.runtime import checkpointing  # pylint: disable=g-import-not-at-top
  from rstg_jax.train.train_state import TrainState  # pylint: disable=g-import-not-at-top
  ckpt_dir = os.path.join(out_dir, "checkpoints")
  if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
    raise CheckpointImportError(f"--out={out_dir}: {ckpt_dir} already holds checkpoints; "
                                "choose an empty folder")
  params = result.variables["params"]
  batch_stats = result.variables.get("batch_stats", {})
  state = TrainState.create(apply_fn=built.model.apply, params=params,
                            tx=_make_tx(config), batch_stats=batch_stats)
  report = {
      "imported_from": os.path.abspath(source.path),
      "source_format": source.format,
      "class_names": result.class_names,
      "head_order": result.head_order,
      "model": config.model.name, "task": config.task,
      "counts": result.counts(),
      "skipped": result.skipped,
      "initialised": result.initialised,
  }
  meta = dict(report, config=json.loads(config.to_json_best_effort()),
              step=0, train_seconds=0.0, eval_history=[])
  ckpt = checkpointing.Checkpointer(ckpt_dir, max_to_keep=1, best_metric=None,
                                    async_save=False)
  ckpt.save(state, meta)
  ckpt.wait_until_finished()
  ckpt.close()
  with open(os.path.join(out_dir, REPORT_FILE), "w", encoding="utf-8") as f:
    json.dump(dict(report, rows=result.rows), f, indent=1)
  return ckpt_dir


def load_imported(out_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """({'params', 'batch_stats'} as numpy, the import report) of an imported DIR."""
  from rstg_jax.runtime import checkpointing  # pylint: disable=g-import-not-at-top
  ckpt = checkpointing.Checkpointer(os.path.join(out_dir, "checkpoints"),
                                    best_metric=None, async_save=False)
  items = ckpt.restore_arrays()
  ckpt.close()
  with open(os.path.join(out_dir, REPORT_FILE), encoding="utf-8") as f:
    report = json.load(f)
  return {"params": items["params"], "batch_stats": items["batch_stats"]}, report


def import_checkpoint(config: ml_collections.ConfigDict, source_path: str,
                      out_dir: str | None, *, allow_missing: Sequence[str] = (),
                      class_names_path: str | None = None,
                      print_fn=print) -> ImportResult:
  """The whole tool: read, map, check, (write if out_dir), print the table."""
  built = _build_model(config)
  source = read_source(source_path, built.info.root)
  names = read_class_names(class_names_path) if class_names_path else None
  result = convert(built, source, seed=int(config.get("seed", 0)),
                   allow_missing=allow_missing, target_class_names=names)
  if print_fn:
    print_fn(format_table(result, source))
  if out_dir:
    path = write_import(out_dir, config, built, result, source)
    if print_fn:
      print_fn(f"wrote {path}/0 and {os.path.join(out_dir, REPORT_FILE)}")
  return result


# ------------------------------------------------------------------------------- CLI


def _define_flags():
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "Config file of the target model.",
                                  lock_config=True)
  flags.DEFINE_string("source", None, "TF1 checkpoint prefix (model.ckpt-NNNN) or a "
                      "folder holding one, or a Caffe2 .pkl of video-nonlocal-net.")
  flags.DEFINE_string("out", None, "Output folder (laid out like a workdir).")
  flags.DEFINE_list("allow_missing", [], "Parameters that may stay at their initial "
                    "value: 'head', 'graph' or glob patterns over parameter paths.")
  flags.DEFINE_string("class_names", None, "Labels file of the target data set (v1 CSV "
                      "or v2 JSON); the head rows are reordered into its order.")
  flags.mark_flags_as_required(["config", "source", "out"])


def main(argv):
  del argv
  fl = flags.FLAGS
  try:
    import_checkpoint(fl.config, fl.source, fl.out, allow_missing=fl.allow_missing,
                      class_names_path=fl.class_names)
  except CheckpointImportError as e:
    print(f"import_checkpoint: error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
