"""SyncMNIST: which two of the moving digits move in sync (46 classes, spec §10.1).

Model: `rstg_jax.models.classifiers.syncmnist_model` (SimpleConv + RSTG / mean / LSTM);
inputs: `rstg_jax.data.sync_mnist_input` over the tfds builder (generated when
absent); extra metric: the synchronous-pair accuracy (`test_pair_top1`: the
true pair against the other pairs of the digits present; 1/3 for a model blind
to motion with 3 digits). The final report (`<eval_split>_metrics.json`,
`_per_class.json`, `_confusion.json` / `.png`: `rstg_jax.train.eval_report`, as
Something-Something writes) is made from the last evaluation's own logits.
"""
from __future__ import annotations

from typing import Any, Callable

import jax

from rstg_datasets.sync_mnist import pair_labels
from rstg_jax.data import sliced_input
from rstg_jax.data import sync_mnist_input
from rstg_jax.models.classifiers import syncmnist_model
from rstg_jax.runtime import parallel
from rstg_jax.tasks import base
from rstg_jax.tasks import sync_mnist_metrics


class Task(base.Task):
  """The SyncMNIST task (`config.task = 'sync_mnist'`)."""

  eval_metrics = sync_mnist_metrics.SyncMnistEvalMetrics
  eval_batch_keys = ("digits",)
  eval_outputs = True   # the final report reuses the last evaluation's logits

  def prepare(self) -> None:
    data = self.config.data
    self.builder = sync_mnist_input.load_builder(data)
    splits = self.builder.info.splits
    for field in ("train_split", "eval_split"):
      if data[field] not in splits:
        raise ValueError(f"config.data.{field}={data[field]!r}: the build "
                         f"{self.builder.data_dir} has splits {sorted(splits)}")
    labels = self.builder.info.features["label"].num_classes
    if labels != self.config.model.num_classes:
      raise ValueError(f"config.model.num_classes={self.config.model.num_classes} "
                       f"but the data {self.builder.info.full_name} has {labels} labels")

  def describe(self) -> str:
    splits = self.builder.info.splits
    return (f"SyncMNIST {self.builder.info.full_name} in {self.builder.data_dir}: "
            + ", ".join(f"{s} {splits[s].num_examples} videos" for s in splits))

  def video_shape(self) -> tuple[int, ...]:
    return tuple(self.builder.info.features["video"].shape)

  def build_model(self):
    return syncmnist_model.build_model(self.config.model)

  def train_input(self):
    data = self.config.data

    def slice_input(index: int, count: int, batch_size: int, seed: int):
      return sync_mnist_input.TrainInput(
          self.builder, split=data.train_split, batch_size=batch_size, seed=seed,
          shuffle_buffer=data.shuffle_buffer, cache=data.cache,
          process_index=index, process_count=count)
    # This process's rows of every global batch, read from its own slices of
    # the split (config.data.num_slices; 0: one slice per process).
    return sliced_input.SlicedTrainInput(
        slice_input, global_batch=self.config.batch_size, seed=self.config.seed,
        num_slices=self.config.data.get("num_slices") or jax.process_count())

  def eval_input(self):
    return sync_mnist_input.EvalInput(
        self.builder, split=self.config.data.eval_split,
        batch_size=parallel.per_process_batch_size(
            self.config.eval_batch_size, self.mesh, "config.eval_batch_size"),
        cache=self.config.data.cache)

  def summary_fields(self, evaluation: dict[str, Any]) -> dict[str, Any]:
    return {"pair_top1": float(evaluation["pair_top1"])}

  def final_report(self, state: Any, predict_step: Callable, workdir: str,
                   evaluation: dict[str, Any]) -> dict[str, Any]:
    del state, predict_step  # no second pass: the evaluation kept its logits
    p = self.eval_split
    fields = base.write_report(workdir, p, evaluation["outputs"],
                               pair_labels.label_names(),
                               expected_videos=int(evaluation["num_examples"]))
    # top-1 / top-5 / counts are the loop's own '<split>_*' fields already.
    return {k: v for k, v in fields.items()
            if k in ("report", f"{p}_mean_class_accuracy")}

  def summary_line(self, summary: dict[str, Any]) -> str:
    p = self.eval_split
    report = f"; report {summary['report']}" if "report" in summary else ""
    return (super().summary_line(summary) + f"  synchronous-pair top-1 "
            f"{summary[f'{p}_pair_top1']:.4f} (chance 1/3 with 3 digits){report}")
