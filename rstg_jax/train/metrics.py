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
class _Count(metrics.Metric):
  """An int32 count summed over batches; subclasses say what to count."""

  count: jnp.ndarray

  @classmethod
  def empty(cls):
    return cls(count=jnp.array(0, jnp.int32))

  def merge(self, other):
    return type(self)(count=self.count + other.count)

  def compute(self) -> Any:
    return self.count


@flax.struct.dataclass
class NonFiniteLogits(_Count):
  """How many real (unmasked) examples have a NaN or Inf logit.

  Evaluation (rstg_jax.train.evaluate) raises when this is not 0.
  """

  @classmethod
  def from_model_output(cls, *, logits: jnp.ndarray,
                        mask: jnp.ndarray | None = None, **_) -> "NonFiniteLogits":
    bad = topk.non_finite_rows(logits, xp=jnp)
    if mask is not None:
      bad = bad & (mask > 0)
    return cls(count=jnp.sum(bad).astype(jnp.int32))


@flax.struct.dataclass
class NumExamples(_Count):
  """How many real (unmasked) examples were seen."""

  @classmethod
  def from_model_output(cls, *, labels: jnp.ndarray,
                        mask: jnp.ndarray | None = None, **_) -> "NumExamples":
    if mask is None:
      return cls(count=jnp.array(labels.shape[0], jnp.int32))
    return cls(count=jnp.sum(mask > 0).astype(jnp.int32))


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
    return topk.per_class_accuracy(self.correct, self.total)


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  top1: Top1
  grad_norm: metrics.Average.from_output("grad_norm")
  learning_rate: metrics.LastValue.from_output("learning_rate")
  # 1 for a step whose updated parameters or statistics hold NaN/Inf.
  state_nonfinite: metrics.Average.from_output("state_nonfinite")


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  top1: Top1
  top5: Top5
  per_class_top1: PerClassAccuracy
  num_examples: NumExamples
  non_finite_logits: NonFiniteLogits


def scalars(computed: dict[str, Any], prefix: str = "") -> dict[str, float]:
  """The scalar entries of a computed collection, as floats (for writers)."""
  out = {}
  for k, v in computed.items():
    if isinstance(v, dict):   # e.g. an evaluation's per-clip `outputs`
      continue
    v = np.asarray(v)
    if v.ndim == 0:
      out[prefix + k] = float(v)
  return out
