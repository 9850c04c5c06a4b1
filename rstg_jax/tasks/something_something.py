"""Something-Something v1 / v2 (174 classes): the released C2D / I3D / Non-Local /
RSTG models of the paper (spec §8, §9).

Model: `rstg_jax.models.classifiers.smt_model`; inputs: `rstg_jax.data.smt_input` over the
tfds builders (ArrayRecord, random access: exact resume). The periodic
evaluation is the central crop of `config.data.eval_split`; the final report
runs the protocol `config.data.eval_views` names ('1x1', '3x2' or the paper's
dense '11x2'), averages the logits of each video's views, and writes
top-1/top-5, per-class accuracy, the confusion matrix (JSON + PNG) and the
predictions file into the workdir (`rstg_jax.train.eval_report`).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np

from rstg_jax.data import multiview
from rstg_jax.data import sliced_input
from rstg_jax.data import smt_input
from rstg_jax.models.classifiers import smt_model
from rstg_jax.runtime import parallel
from rstg_jax.tasks import base


class Task(base.Task):
  """The Something-Something task (`config.task = 'something_something'`)."""

  def prepare(self) -> None:
    data = self.config.data
    self.builder = smt_input.load_builder(data)
    splits = self.builder.info.splits
    needed = ["eval_split"] + (["train_split"] if self.config.mode == "train" else [])
    for field in needed:
      if data[field] not in splits:
        raise smt_input.DataError(
            f"config.data.{field}={data[field]!r} is not in the build "
            f"{self.builder.data_dir} (splits: {sorted(splits)})")
    self.class_names = list(self.builder.info.features["label"].names)
    if len(self.class_names) != self.config.model.num_classes:
      raise smt_input.DataError(
          f"config.model.num_classes={self.config.model.num_classes} but the build "
          f"{self.builder.data_dir} has {len(self.class_names)} label names")
    try:
      multiview.view_spec(data.eval_views)
    except ValueError as e:
      raise smt_input.DataError(f"config.data.eval_views: {e}") from None
    self._sources: dict[str, smt_input.ExampleSource] = {}

  def source(self, split: str) -> smt_input.ExampleSource:
    if split not in self._sources:
      self._sources[split] = smt_input.ExampleSource(self.builder, split)
    return self._sources[split]

  def describe(self) -> str:
    splits = self.builder.info.splits
    bad = dict(self.builder.info.metadata.get("bad_input", {}))
    skipped = {s: v.get("skipped", v) for s, v in bad.get("splits", {}).items()}
    return (f"{self.builder.info.full_name} in {self.builder.data_dir}: "
            + ", ".join(f"{s} {splits[s].num_examples} videos" for s in splits)
            + f"; skipped at build time: {skipped or 'none'}"
            + f", in no split file: {bad.get('not_in_any_split', {}).get('count', 0)}")

  def video_shape(self) -> tuple[int, ...]:
    d = self.config.data
    return (d.num_frames, d.image_size, d.image_size, 3)

  def build_model(self):
    return smt_model.build_model(self.config.model)

  def train_input(self):
    data = self.config.data
    source = self.source(data.train_split)
    settings = smt_input.clip_settings(data, self.class_names)

    def slice_input(index: int, count: int, rows: int, seed: int):
      return smt_input.TrainSliceInput(
          source, slice_index=index, num_slices=count, rows=rows, seed=seed,
          settings=settings, num_workers=data.num_workers)
    return sliced_input.SlicedTrainInput(
        slice_input, global_batch=self.config.batch_size, seed=self.config.seed,
        num_slices=data.get("num_slices") or jax.process_count())

  def _eval_input(self, views: str) -> smt_input.EvalInput:
    data = self.config.data
    return smt_input.EvalInput(
        self.source(data.eval_split),
        batch_size=parallel.per_process_batch_size(
            self.config.eval_batch_size, self.mesh, "config.eval_batch_size"),
        views=smt_input.view_spec_from_config(data, views),
        num_frames=data.num_frames, num_workers=data.num_workers)

  def eval_input(self):
    return self._eval_input("1x1")  # the central crop, as the original's validation

  def final_report(self, state: Any, predict_step: Callable, workdir: str,
                   evaluation: dict[str, Any]) -> dict[str, Any]:
    del evaluation  # the central crop; the report runs the eval_views protocol
    views = self.config.data.eval_views
    ev = self._eval_input(views)
    outputs = gather_predictions(predict_step, state, ev, self.mesh)
    prefix = f"{self.eval_split}_{views}"
    fields = base.write_report(
        workdir, prefix, outputs, self.class_names, expected_videos=ev.num_videos,
        video_index=outputs["video_index"],
        video_ids=smt_input.decode_video_ids(outputs["video_id"]),
        views_per_video=ev.views_per_video)
    if jax.process_index() == 0:
      save_video_logits(os.path.join(workdir, f"{prefix}_video_logits.npz"), outputs,
                        ev.views_per_video)
    return fields | {"report": os.path.join(workdir, f"{prefix}_metrics.json")}

  def summary_line(self, summary: dict[str, Any]) -> str:
    views = self.config.data.eval_views
    p = f"{self.eval_split}_{views}"
    dense = (f"; {views} views: top-1 {summary[f'{p}_top1']:.4f}, top-5 "
             f"{summary[f'{p}_top5']:.4f}" if f"{p}_top1" in summary else "")
    return super().summary_line(summary) + dense + f"; report {summary['report']}"


def save_video_logits(path: str, outputs: dict[str, np.ndarray],
                      views_per_video: int) -> None:
  """The view-averaged logits of every video (for ensembles and checks):
  `video_index` [M], `video_id` [M] str, `label` [M], `logits` [M, K] float64."""
  averager = multiview.ViewAverager(views_per_video)
  averager.update(outputs["logits"], outputs["label"], outputs["video_index"],
                  outputs["mask"], outputs["video_id"])
  per_video = averager.result()
  np.savez(path, video_index=per_video["video_index"], logits=per_video["logits"],
           label=per_video["label"],
           video_id=np.asarray(smt_input.decode_video_ids(per_video["video_id"])))


def gather_predictions(predict_step: Callable, state: Any, batches: Any, mesh
                       ) -> dict[str, np.ndarray]:
  """Per-clip outputs of every process, concatenated (rows of padding included).

  `predict_step` returns replicated arrays, so each process receives the rows
  of all processes' shards of every global batch.
  """
  parts: dict[str, list[np.ndarray]] = {}
  for batch in batches:
    out = jax.device_get(predict_step(state, parallel.host_to_global(batch, mesh)))
    for k, v in out.items():
      parts.setdefault(k, []).append(np.asarray(v))
  return {k: np.concatenate(v) for k, v in parts.items()}
