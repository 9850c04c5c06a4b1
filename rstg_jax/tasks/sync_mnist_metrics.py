"""SyncMNIST's own metric: the synchronous-pair accuracy, and the eval collection.

The SyncMNIST evaluation batches carry `digits` [B, n] (the classes of the n
digits, sync pair first), which `SyncPairAccuracy` needs.
"""
# No `from __future__ import annotations`: clu reads the metric classes from
# the Collection fields' annotations, which must stay real classes.
from typing import Any

from clu import metrics
import flax
import jax.numpy as jnp
import numpy as np

from rstg_datasets.sync_mnist import pair_labels
from rstg_jax.train.metrics import EvalMetrics


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



# EvalMetrics plus `pair_top1` (SyncPairAccuracy), for batches with `digits`.
# Built with create() because clu reads only a class's own annotations, so a
# subclass would lose the inherited fields.
SyncMnistEvalMetrics = metrics.Collection.create(
    **EvalMetrics.__annotations__, pair_top1=SyncPairAccuracy)
