"""The interface between the training loop and a task.

The loop calls, in this order: `describe()` (what the user sees at start),
`build_model()`, `train_input()` / `eval_input()`, the jitted steps with the
task's `eval_metrics` collection (fed the batch keys `eval_batch_keys`),
`summary_fields()` after each evaluation, and `final_report()` once at the end
(e.g. a dense multi-view evaluation report, or the report of the last evaluation's
own logits when `eval_outputs` is set). Inputs follow two small protocols:

  train input: `iterate(start_step)` -> this process's batches for steps
    start_step + 1, start_step + 2, ... (a pure function of seed and step, so
    a resumed run sees the batches an uninterrupted one sees);
    `num_examples`, `steps_per_epoch`, `element_shape('video')`.
  eval input: iterable of this process's padded batches with `mask` (0 =
    padding), the same number on every process; `num_examples` (real examples
    over all processes).
"""
from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any, Callable

import flax.linen as nn
import jax
from jax.sharding import Mesh
import ml_collections
import numpy as np

from rstg_jax.train import eval_report
from rstg_jax.train import metrics as metrics_lib


class Task(abc.ABC):
  """One kind of experiment (a data set, its model family, metrics and reports)."""

  # The clu collection computed by the eval step, and the batch keys (besides
  # video, label, mask) that its metrics need.
  eval_metrics: type = metrics_lib.EvalMetrics
  eval_batch_keys: tuple[str, ...] = ()
  # The evaluation also returns its per-clip logits, labels and mask (as
  # evaluation['outputs']), so `final_report` needs no second pass over the split.
  eval_outputs: bool = False

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh):
    self.config = config
    self.mesh = mesh

  @property
  def eval_split(self) -> str:
    """The split of the periodic evaluation (the prefix of its summary fields)."""
    return self.config.data.eval_split

  @abc.abstractmethod
  def prepare(self) -> None:
    """Finds (or builds) the data; raises a clear error for a missing split or a
    class count that differs from the data's label count."""

  @abc.abstractmethod
  def describe(self) -> str:
    """Split sizes and anything the build skipped, for the start-up log."""

  @abc.abstractmethod
  def video_shape(self) -> tuple[int, ...]:
    """(T, H, W, C) of one training clip (the model is initialised on it)."""

  @abc.abstractmethod
  def build_model(self) -> nn.Module:
    """A Linen classifier: `apply(variables, video, train=...)` -> logits [B, K]."""

  @abc.abstractmethod
  def train_input(self) -> Any:
    """This process's training batches (see the module docstring)."""

  @abc.abstractmethod
  def eval_input(self) -> Any:
    """This process's batches of the periodic evaluation."""

  def summary_fields(self, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Extra task figures of one evaluation, e.g. {'pair_top1': ...}."""
    del evaluation
    return {}

  def final_report(self, state: Any, predict_step: Callable, workdir: str,
                   evaluation: dict[str, Any]) -> dict[str, Any]:
    """Runs after the last evaluation (`evaluation`, the loop's result: metrics,
    and 'outputs' when `eval_outputs` is set); returns fields for summary.json."""
    del state, predict_step, workdir, evaluation
    return {}

  def summary_line(self, summary: dict[str, Any]) -> str:
    """The last line the main job prints."""
    p = self.eval_split
    return (f"{p} top-1 {summary[f'{p}_top1']:.4f}  top-5 {summary[f'{p}_top5']:.4f}"
            f"  ({summary[f'{p}_num_examples']} videos, {summary['steps']} steps, "
            f"{summary['train_seconds']:.0f} s training)")


def write_report(workdir: str, prefix: str, outputs: dict[str, np.ndarray],
                 class_names: Sequence[str], *, expected_videos: int,
                 **video_info: Any) -> dict[str, Any]:
  """The evaluation report files (`eval_report.write_eval_report`: metrics, per-class
  accuracy, confusion matrix, ...) of gathered per-clip `outputs` ('logits' [N, K],
  'label' [N], 'mask' [N]), written by process 0 into `workdir` as `<prefix>_*`.

  `video_info`: write_eval_report's video_index / video_ids / views_per_video.
  Returns the report's scalars as summary fields '<prefix>_<name>' and 'report'
  (the metrics file); empty on other processes. Raises AssertionError when the
  report counts other than `expected_videos` videos (every video counts once).
  """
  if jax.process_index() != 0:
    return {}
  result = eval_report.write_eval_report(
      workdir, prefix, logits=outputs["logits"], labels=outputs["label"],
      class_names=class_names, mask=outputs["mask"], **video_info)
  if result["num_videos"] != expected_videos:
    raise AssertionError(f"the {prefix} report counted {result['num_videos']} videos "
                         f"but the split holds {expected_videos}")
  return {f"{prefix}_{k}": v for k, v in result.items()} | {
      "report": os.path.join(workdir, f"{prefix}_metrics.json")}
