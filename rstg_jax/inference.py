"""Inference without a data set: a config's model with a checkpoint's weights, class
names, batched per-video logits and top-k (the library side of `rstg_jax.predict`).

The checkpoint is anything `config.init_from` accepts (a workdir: its latest step; a
step folder; an imported original checkpoint), and must match the config's model
exactly (`init_from.check_exact`). Logits are the model's `apply(..., train=False)`,
what the evaluation's predict step computes; the views of a video are averaged as
logits (`multiview.average_logits_per_video`), as the evaluation does.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from rstg_jax.data import multiview
from rstg_jax.runtime import checkpointing
from rstg_jax.train import init_from as init_from_lib


class PredictError(ValueError):
  """A user error of prediction (checkpoint, class names, options); one line."""


@dataclasses.dataclass
class LoadedModel:
  """A model ready to predict."""
  config: Any
  model: Any
  variables: dict[str, Any]          # {'params', 'batch_stats'} on the device
  checkpoint: str                    # 'DIR/STEP'
  meta: dict[str, Any]               # the checkpoint's meta (config, class names ...)


def _as_flag(error: Exception, flag: str = "--checkpoint") -> str:
  # init_from's messages name the config field; here the same path came from a flag.
  return str(error).replace("config.init_from=", f"{flag}=")


def build_model(config) -> Any:
  from rstg_jax import tasks  # pylint: disable=g-import-not-at-top
  return tasks.get_task_class(config.task)(config, None).build_model()


def load_model(config, checkpoint: str, example_clip: np.ndarray) -> LoadedModel:
  """The config's model with the weights of `checkpoint`.

  Args:
    config: the experiment config.
    checkpoint: a workdir, checkpoints folder, step folder or imported checkpoint.
    example_clip: one clip [T, H, W, C] (the model is traced on it to check that
      every parameter of the checkpoint fits).

  Raises:
    PredictError: no checkpoint there, or one of another model (naming the first
      parameter that differs), or a damaged one.
  """
  model = build_model(config)
  try:
    source, name = init_from_lib.load(checkpoint)
    directory, _ = init_from_lib.resolve(checkpoint)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                            jax.ShapeDtypeStruct((1,) + example_clip.shape,
                                                 example_clip.dtype))
    init_from_lib.check_exact(shapes["params"], shapes.get("batch_stats", {}), source,
                              name)
    ckpt = checkpointing.Checkpointer(directory, best_metric=None, async_save=False)
    try:
      meta = ckpt.restore_meta(int(os.path.basename(name)))
    finally:
      ckpt.close()
  except (init_from_lib.InitFromError, checkpointing.CheckpointMismatchError,
          checkpointing.CheckpointDamagedError) as e:
    raise PredictError(_as_flag(e).replace(
        "is not a checkpoint of this model", f"does not match --config "
        f"(model {config.model.name!r})")) from None
  variables = {"params": source["params"], "batch_stats": source["batch_stats"]}
  return LoadedModel(config, model, jax.device_put(variables), name, meta)


def class_names(config, meta: dict[str, Any], labels_file: str | None = None
                ) -> tuple[list[str], str]:
  """(names of the classifier rows, where they came from).

  In order: `labels_file` (a v1 labels CSV or v2 labels JSON); the names an imported
  checkpoint records (`meta['class_names']`, in its head's row order); SyncMNIST's
  pair names; the label names of the data set the config (or else the checkpoint's
  config) names, when it is built; else 'class <k>'.
  """
  k = int(config.model.num_classes)

  def checked(names, source):
    names = [str(n) for n in names]
    if len(names) != k:
      raise PredictError(f"{source} has {len(names)} class names but the model has "
                         f"{k} classes")
    return names, source

  if labels_file:
    from rstg_jax.tools import import_checkpoint  # pylint: disable=g-import-not-at-top
    try:
      return checked(import_checkpoint.read_class_names(labels_file),
                     f"--class_names={labels_file}")
    except import_checkpoint.CheckpointImportError as e:
      raise PredictError(str(e)) from None
  if meta.get("class_names"):
    return checked(meta["class_names"], "the checkpoint's import report")
  if config.task == "sync_mnist":
    from rstg_datasets.sync_mnist import pair_labels  # pylint: disable=g-import-not-at-top
    return checked(pair_labels.label_names(), "SyncMNIST's digit pairs")
  if config.task == "something_something":
    from rstg_jax.data import smt_input  # pylint: disable=g-import-not-at-top
    candidates = [("--config", config.data)]
    saved = (meta.get("config") or {}).get("data")
    if saved:
      import ml_collections  # pylint: disable=g-import-not-at-top
      candidates.append(("the checkpoint's config", ml_collections.ConfigDict(saved)))
    for where, data in candidates:
      try:
        builder = smt_input.load_builder(data)
      except (smt_input.DataError, ValueError, KeyError):
        continue
      names = builder.info.features["label"].names
      return checked(names, f"the labels of {builder.data_dir} ({where})")
  return [f"class {i}" for i in range(k)], "none found (give --class_names)"


# Model settings that change speed or memory, not the function (not worth a note):
# the exact rewrites of the graph differ from their literal forms by float rounding.
_SPEED_KNOBS = ("dtype", "remat_stages", "graph.scan", "graph.remat", "graph.unroll",
                "graph.lstm_vjp", "graph.pair_rewrite", "graph.wavefront")


def model_differences(config, meta: dict[str, Any]) -> list[str]:
  """`config.model` fields whose value differs from the checkpoint's saved config.

  Parameter shapes cannot tell e.g. a whole-clip from a per-frame LayerNorm; the
  saved config can (checkpoints written by `rstg_jax.main` or the import tool).
  """
  saved = meta.get("config")
  # Checkpoints from elsewhere may hold no config, or one not as a mapping.
  saved = saved.get("model") if isinstance(saved, dict) else None
  if not isinstance(saved, dict):
    return []
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  ours = traverse_util.flatten_dict(config.model.to_dict(), sep=".")
  theirs = traverse_util.flatten_dict(saved, sep=".")

  def norm(v):  # JSON turns tuples into lists
    return list(v) if isinstance(v, tuple) else v
  return [f"model.{k}={ours[k]!r} (the checkpoint was trained with {theirs[k]!r})"
          for k in sorted(set(ours) & set(theirs))
          if k not in _SPEED_KNOBS and norm(ours[k]) != norm(theirs[k])]


def topk(logits: np.ndarray, names: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
  """The k most probable classes of one video's logits [K]: rank, class, name,
  probability (softmax of the view-averaged logits); ties keep the lower class id."""
  logits = np.asarray(logits, np.float64)
  p = np.exp(logits - logits.max())
  p /= p.sum()
  order = np.argsort(-logits, kind="stable")[:k]
  return [{"rank": r + 1, "class": int(c), "name": names[c], "probability": float(p[c])}
          for r, c in enumerate(order)]


class BatchPredictor:
  """Runs clips of many videos through the model in fixed-size batches.

  `add(key, clips [V, T, H, W, C])` queues a video's views; whenever `batch_size`
  clips are queued they run (the last batch is padded, so one shape compiles once
  per clip size); `results()` / `add` yield (key, view-averaged logits [K] float64)
  for each finished video, in the order added.
  """

  def __init__(self, loaded: LoadedModel, batch_size: int):
    if batch_size < 1:
      raise PredictError(f"--batch_size={batch_size} must be >= 1")
    self.batch_size = batch_size
    model = loaded.model
    self._apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    self._variables = loaded.variables
    self._queue: list[tuple[Any, np.ndarray]] = []   # (key, clip) per view
    self._logits: dict[Any, list[np.ndarray]] = {}
    self._views: dict[Any, int] = {}
    self._order: list[Any] = []

  def add(self, key: Any, clips: np.ndarray) -> Iterator[tuple[Any, np.ndarray]]:
    self._views[key] = len(clips)
    self._logits[key] = []
    self._order.append(key)
    self._queue.extend((key, c) for c in clips)
    while len(self._queue) >= self.batch_size:
      self._run(self.batch_size)
    yield from self._finished()

  def results(self) -> Iterator[tuple[Any, np.ndarray]]:
    while self._queue:
      self._run(len(self._queue))
    yield from self._finished()

  def _run(self, n: int) -> None:
    rows, self._queue = self._queue[:n], self._queue[n:]
    # Clips of different sizes (a folder of videos of other aspect ratios keeps one
    # crop size; SyncMNIST clips of other lengths do not) run in separate groups.
    groups: dict[tuple, list[int]] = {}
    for i, (_, clip) in enumerate(rows):
      groups.setdefault(clip.shape, []).append(i)
    for shape, idx in groups.items():
      batch = np.zeros((self.batch_size,) + shape, rows[idx[0]][1].dtype)
      for j, i in enumerate(idx):
        batch[j] = rows[i][1]
      logits = np.asarray(jax.device_get(self._apply(self._variables, batch)))
      for j, i in enumerate(idx):
        self._logits[rows[i][0]].append(logits[j])

  def _finished(self) -> Iterator[tuple[Any, np.ndarray]]:
    while self._order and len(self._logits[self._order[0]]) == self._views[self._order[0]]:
      key = self._order.pop(0)
      per_view = np.stack(self._logits.pop(key))
      _, mean, _ = multiview.average_logits_per_video(
          per_view, np.zeros(len(per_view), np.int64))
      yield key, mean[0]
