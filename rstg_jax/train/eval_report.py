"""Evaluation outputs: accuracies, per-class accuracy, confusion matrix, predictions.

Everything takes numpy arrays, so an eval loop can call it with what it
gathered: per-clip `logits` [N, C], `labels` [N], `mask` [N] (0 = padding),
`video_index` [N] (views of one video share it) and optionally `video_ids`.
Views are averaged per video first (`rstg_jax.data.multiview`), so every
video counts once.

Files written by `write_eval_report(out_dir, ...)` (prefix e.g. "validation"):
  <prefix>_metrics.json     top1, top5, mean per-class accuracy, counts
  <prefix>_per_class.json   {class name: {"accuracy", "count"}}
  <prefix>_confusion.json   {"class_names", "matrix"} rows = true, cols = predicted
  <prefix>_confusion.png    row-normalised confusion matrix
  <prefix>_predictions.txt  `<video_id>;<predicted class name>` per line (when
                            video ids are given; the format of the official
                            test-set submissions)
For an unlabelled split (all labels -1) only the predictions file is written.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as sk_metrics

from rstg_jax.data import multiview
from rstg_jax.train import topk


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """[N] bool: the label is among the k largest logits; ties count against it
  (rstg_jax.train.topk, the rule of the training metrics too)."""
  return topk.topk_correct(np.asarray(logits), np.asarray(labels).astype(np.int64), k)


def classification_metrics(logits: np.ndarray, labels: np.ndarray,
                           num_classes: int | None = None) -> dict[str, Any]:
  """Per-video metrics from per-video logits [M, C] and labels [M].

  A video is correct at top-1 when its label's logit is the unique maximum
  (ties count against the label). `predictions` (for the confusion matrix
  and predictions file) are the argmax, the first of equal logits winning.
  NaN/Inf logits raise topk.NonFiniteLogitsError.

  Returns:
    {"top1", "top5", "mean_class_accuracy", "num_videos",
     "per_class_accuracy" [C] (nan for classes without videos),
     "per_class_count" [C], "predictions" [M]}.
  """
  logits = np.asarray(logits)
  labels = np.asarray(labels).astype(np.int64)
  num_classes = num_classes or logits.shape[1]
  if np.any(labels < 0) or np.any(labels >= num_classes):
    raise ValueError("labels must be in [0, num_classes); unlabelled videos (-1) have "
                     "no accuracy")
  topk.check_finite(int(np.sum(topk.non_finite_rows(logits))), len(logits),
                    "evaluation report", "videos")
  predictions = np.argmax(logits, axis=1)
  correct = topk_correct(logits, labels, 1)
  count = np.bincount(labels, minlength=num_classes)
  hits = np.bincount(labels, weights=correct, minlength=num_classes)
  per_class = topk.per_class_accuracy(hits, count)
  return {
      "top1": float(np.mean(correct)),
      "top5": float(np.mean(topk_correct(logits, labels, min(5, num_classes)))),
      "mean_class_accuracy": float(np.nanmean(per_class)) if np.any(count) else float("nan"),
      "num_videos": int(len(labels)),
      "per_class_accuracy": per_class,
      "per_class_count": count,
      "predictions": predictions,
  }


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int) -> np.ndarray:
  """int64 [C, C]: rows = true class, columns = predicted class."""
  return sk_metrics.confusion_matrix(labels, predictions, labels=np.arange(num_classes))


def write_confusion_json(path: str, matrix: np.ndarray, class_names: Sequence[str]) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"class_names": list(class_names), "rows": "true class",
               "columns": "predicted class", "matrix": np.asarray(matrix).tolist()}, f)


def read_confusion_json(path: str) -> tuple[np.ndarray, list[str]]:
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  return np.asarray(data["matrix"], np.int64), list(data["class_names"])


def plot_confusion_png(path: str, matrix: np.ndarray, class_names: Sequence[str],
                       title: str = "") -> None:
  """Row-normalised confusion matrix (each true class sums to 1) as a PNG.

  With many classes (174) every name is still printed, in a small font, on a
  figure large enough to zoom into.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  matrix = np.asarray(matrix, np.float64)
  rows = matrix.sum(axis=1, keepdims=True)
  normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
  n = len(class_names)
  # Fixed margins (not tight_layout, which is slow with 348 tick labels) leave
  # room for the longest names.
  fontsize = 8 if n <= 40 else 5
  label_in = 0.0075 * fontsize * max(len(str(c)) for c in class_names) + 0.6
  cells_in = max(4.0, 0.1 * n)
  side = cells_in + label_in + 1.5
  fig = plt.figure(figsize=(side, side), dpi=100)
  ax = fig.add_axes([label_in / side, label_in / side, cells_in / side, cells_in / side])
  cax = fig.add_axes([(label_in + cells_in + 0.15) / side, label_in / side, 0.2 / side,
                      cells_in / side])
  # A square-root colour scale keeps small confusions visible next to the diagonal.
  image = ax.imshow(normalised, cmap="Blues", norm=colors.PowerNorm(0.5, 0.0, 1.0),
                    interpolation="nearest")
  ax.set_xticks(range(n))
  ax.set_yticks(range(n))
  ax.set_xticklabels(class_names, rotation=90, fontsize=fontsize)
  ax.set_yticklabels(class_names, fontsize=fontsize)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(title or "confusion matrix (rows normalised)")
  fig.colorbar(image, cax=cax)
  fig.savefig(path)
  plt.close(fig)


def _as_str(video_id) -> str:
  return video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)


def write_predictions(path: str, video_ids: Sequence, predicted_labels: Sequence[int],
                      class_names: Sequence[str]) -> None:
  """Writes `<video_id>;<class name>` lines, one per video."""
  with open(path, "w", encoding="utf-8") as f:
    for video_id, label in zip(video_ids, predicted_labels, strict=True):
      video_id = _as_str(video_id)
      if ";" in video_id or "\n" in video_id:
        raise ValueError(f"video id {video_id!r} cannot be written in a ';' file")
      f.write(f"{video_id};{class_names[int(label)]}\n")


def read_predictions(path: str) -> list[tuple[str, str]]:
  """[(video_id, class name)] from a predictions file (order kept)."""
  out = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      line = line.rstrip("\r\n")
      if not line:
        continue
      video_id, sep, name = line.partition(";")
      if not sep or not video_id or not name:
        raise ValueError(f"{path}:{lineno}: expected '<video_id>;<class name>', got {line!r}")
      out.append((video_id, name))
  return out


def write_eval_report(out_dir: str, prefix: str, *, logits: np.ndarray, labels: np.ndarray,
                      class_names: Sequence[str], mask: np.ndarray | None = None,
                      video_index: np.ndarray | None = None,
                      video_ids: Sequence | None = None,
                      views_per_video: int | None = None,
                      confusion_png: bool = True) -> dict[str, Any]:
  """Averages views per video, computes the metrics and writes the files.

  Args:
    out_dir: folder for the files (created).
    prefix: file-name prefix, e.g. "validation" or "validation_step_1000".
    logits: [N, C] per-clip (or per-video) logits.
    labels: [N] int, -1 for unlabelled videos.
    class_names: [C] names in label-id order.
    mask: [N], 0 for padding rows (None: all real).
    video_index: [N]; None means one clip per video (row = video).
    video_ids: [N] ids (str or bytes) for the predictions file.
    views_per_video: if given, every video must have exactly this many clips.
    confusion_png: also draw the PNG (a few seconds for 174 classes).

  Returns:
    The scalar metrics (empty for an unlabelled split) plus "num_videos".
  """
  os.makedirs(out_dir, exist_ok=True)
  logits = np.asarray(logits)
  n = len(logits)
  mask = np.ones(n, np.float32) if mask is None else np.asarray(mask)
  video_index = np.arange(n) if video_index is None else np.asarray(video_index)
  real = mask > 0
  topk.check_finite(int(np.sum(topk.non_finite_rows(logits[real]))), int(np.sum(real)),
                    f"evaluation report {prefix!r}", "clips")
  averager = multiview.ViewAverager(views_per_video)
  averager.update(logits, labels, video_index, mask, video_ids)
  per_video = averager.result()
  video_logits, video_labels = per_video["logits"], per_video["label"]
  result: dict[str, Any] = {"num_videos": int(len(video_labels))}
  predictions = np.argmax(video_logits, axis=1)
  if "video_id" in per_video:
    write_predictions(os.path.join(out_dir, f"{prefix}_predictions.txt"),
                      per_video["video_id"], predictions, class_names)
  if np.all(video_labels < 0):
    return result
  m = classification_metrics(video_logits, video_labels, len(class_names))
  result.update({k: m[k] for k in ("top1", "top5", "mean_class_accuracy")})
  with open(os.path.join(out_dir, f"{prefix}_metrics.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(out_dir, f"{prefix}_per_class.json"), "w", encoding="utf-8") as f:
    json.dump({name: {"accuracy": None if np.isnan(acc) else float(acc), "count": int(c)}
               for name, acc, c in zip(class_names, m["per_class_accuracy"],
                                       m["per_class_count"])}, f, indent=1)
  matrix = confusion_matrix(video_labels, m["predictions"], len(class_names))
  write_confusion_json(os.path.join(out_dir, f"{prefix}_confusion.json"), matrix, class_names)
  if confusion_png:
    plot_confusion_png(os.path.join(out_dir, f"{prefix}_confusion.png"), matrix, class_names,
                       title=f"{prefix}: top-1 {result['top1']:.3f}, "
                             f"top-5 {result['top5']:.3f}, {result['num_videos']} videos")
  return result
