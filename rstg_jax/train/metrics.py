"""Training and evaluation metrics as clu metric collections.

Every metric takes the evaluation `mask` [B] (1 = real example, 0 = padding),
so padded examples of the last evaluation batch never count. The collections
are built inside the jitted steps from global arrays, so their values are
global over all devices and processes.
"""
# No `from __future__ import annotations` here: clu reads the metric classes
# from the Collection fields' annotations, which must stay real classes.
from typing import Any

from clu import metrics
import flax
import jax.numpy as jnp
import numpy as np

from rstg_jax.train import topk


def _top1(logits, labels, **_):
  return topk.topk_correct(logits, labels, 1, xp=jnp).astype(jnp.float32)


def _top5(logits, labels, **_):
  return topk.topk_correct(logits, labels, 5, xp=jnp).astype(jnp.float32)


# Top-1 as the fraction of examples whose label's logit is the unique maximum
# (rstg_jax.train.topk: ties count against the label), not clu's Accuracy
# (argmax, where the first of equal logits wins).
Top1 = metrics.Average.from_fun(_top1)
Top5 = metrics.Average.from_fun(_top5)


@flax.struct.dataclass
class NonFiniteLogits(metrics.Metric):
  """How many real (unmasked) examples have a NaN or Inf logit.

  Evaluation (rstg_jax.train.evaluate) raises when this is not 0.
  """

  count: jnp.ndarray

  @classmethod
  def empty(cls) -> "NonFiniteLogits":
    return cls(count=jnp.array(0, jnp.int32))

  @classmethod
  def from_model_output(cls, *, logits: jnp.ndarray,
                        mask: jnp.ndarray | None = None, **_) -> "NonFiniteLogits":
    bad = topk.non_finite_rows(logits, xp=jnp)
    if mask is not None:
      bad = bad & (mask > 0)
    return cls(count=jnp.sum(bad).astype(jnp.int32))

  def merge(self, other: "NonFiniteLogits") -> "NonFiniteLogits":
    return type(self)(count=self.count + other.count)

  def compute(self) -> Any:
    return self.count


@flax.struct.dataclass
class NumExamples(metrics.Metric):
  """How many real (unmasked) examples were seen."""

  count: jnp.ndarray

  @classmethod
  def empty(cls) -> "NumExamples":
    return cls(count=jnp.array(0, jnp.int32))

  @classmethod
  def from_model_output(cls, *, labels: jnp.ndarray,
                        mask: jnp.ndarray | None = None, **_) -> "NumExamples":
    if mask is None:
      return cls(count=jnp.array(labels.shape[0], jnp.int32))
    return cls(count=jnp.sum(mask > 0).astype(jnp.int32))

  def merge(self, other: "NumExamples") -> "NumExamples":
    return type(self)(count=self.count + other.count)

  def compute(self) -> Any:
    return self.count


@flax.struct.dataclass
class PerClassAccuracy(metrics.Metric):
  """Top-1 accuracy of each class; NaN for classes absent from the data.

  A hit is the label's logit being the unique maximum (rstg_jax.train.topk).

  Holds [num_classes] counts of correct and seen examples, so it merges over
  batches exactly.
  """

  correct: jnp.ndarray
  total: jnp.ndarray

  @classmethod
  def from_model_output(cls, *, logits: jnp.ndarray, labels: jnp.ndarray,
                        mask: jnp.ndarray | None = None,
                        **_) -> "PerClassAccuracy":
    num_classes = logits.shape[-1]
    weight = (jnp.ones(labels.shape, jnp.int32) if mask is None
              else (mask > 0).astype(jnp.int32))
    onehot = (labels[:, None] == jnp.arange(num_classes)[None]).astype(
        jnp.int32) * weight[:, None]                          # [B, classes]
    hit = topk.topk_correct(logits, labels, 1, xp=jnp).astype(jnp.int32)
    return cls(correct=jnp.sum(onehot * hit[:, None], 0),
               total=jnp.sum(onehot, 0))

  def merge(self, other: "PerClassAccuracy") -> "PerClassAccuracy":
    return type(self)(correct=self.correct + other.correct,
                      total=self.total + other.total)

  def compute(self) -> Any:
    correct = np.asarray(self.correct, np.float64)
    total = np.asarray(self.total, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


@flax.struct.dataclass
class SyncPairAccuracy(metrics.Metric):
  """SyncMNIST: how often the synchronous pair wins among the present digits' pairs.

  For each synchronous video (label < 45) with digit classes `digits` [B, n],
  the logits of the n (n - 1) / 2 pairs of present digits are compared; the
  video counts as correct when the true pair's logit is strictly the largest.
  A model that recognises the digits but not their motion scores 1 / 3 with
  3 digits (1 / 10 with 5); only one that sees which digits move together
  does better. Videos of class 45 (no synchronous pair) and padding do not
  count. Pair ids and the no-sync class come from rstg_datasets.sync_mnist.pair_labels.
  """

  correct: jnp.ndarray
  total: jnp.ndarray

  @classmethod
  def empty(cls) -> "SyncPairAccuracy":
    return cls(correct=jnp.array(0, jnp.int32), total=jnp.array(0, jnp.int32))

  @classmethod
  def from_model_output(cls, *, logits: jnp.ndarray, labels: jnp.ndarray,
                        digits: jnp.ndarray, mask: jnp.ndarray | None = None,
                        **_) -> "SyncPairAccuracy":
    # Imported here: the package's __init__ registers the tfds builder.
    from rstg_datasets.sync_mnist import pair_labels  # pylint: disable=g-import-not-at-top
    first, second = np.triu_indices(digits.shape[-1], k=1)  # static pair list
    pairs = pair_labels.pair_label_array(
        digits[:, first], digits[:, second], xp=jnp).astype(jnp.int32)  # [B, P]
    pair_logits = jnp.take_along_axis(logits, pairs, axis=-1)
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    others = jnp.where(pairs == labels[:, None], -jnp.inf, pair_logits)
    hit = (true[:, 0] > jnp.max(others, axis=-1)).astype(jnp.int32)
    counted = (labels != pair_labels.NO_SYNC_LABEL).astype(jnp.int32)
    if mask is not None:
      counted = counted * (mask > 0).astype(jnp.int32)
    return cls(correct=jnp.sum(hit * counted), total=jnp.sum(counted))

  def merge(self, other: "SyncPairAccuracy") -> "SyncPairAccuracy":
    return type(self)(correct=self.correct + other.correct,
                      total=self.total + other.total)

  def compute(self) -> Any:
    total = float(self.total)
    return np.float64(float(self.correct) / total) if total else np.float64(np.nan)


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  top1: Top1
  grad_norm: metrics.Average.from_output("grad_norm")
  learning_rate: metrics.LastValue.from_output("learning_rate")


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  top1: Top1
  top5: Top5
  per_class_top1: PerClassAccuracy
  num_examples: NumExamples
  non_finite_logits: NonFiniteLogits


# EvalMetrics plus `pair_top1` (SyncPairAccuracy), for batches with `digits`.
# Built with create() because clu reads only a class's own annotations, so a
# subclass would lose the inherited fields.
SyncMnistEvalMetrics = metrics.Collection.create(
    **EvalMetrics.__annotations__, pair_top1=SyncPairAccuracy)


def scalars(computed: dict[str, Any], prefix: str = "") -> dict[str, float]:
  """The scalar entries of a computed collection, as floats (for writers)."""
  out = {}
  for k, v in computed.items():
    v = np.asarray(v)
    if v.ndim == 0:
      out[prefix + k] = float(v)
  return out
