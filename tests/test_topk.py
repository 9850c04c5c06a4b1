"""Top-k accuracy: one rule everywhere (ties count against the label), NaN logits fail."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.runtime import parallel
from rstg_jax.train import eval_report, evaluate, metrics, topk


def _reference(logits, labels, k):
  """A label is in the top k when fewer than k other logits are >= its own."""
  out = []
  for row, label in zip(logits, labels):
    if np.any(np.isnan(row)):
      out.append(False)
      continue
    others = np.delete(row, label)
    out.append(int(np.sum(others >= row[label])) < k)
  return np.array(out)


@pytest.mark.parametrize("xp", [np, jnp])
def test_ties_count_against_the_label_and_nan_is_a_miss(xp):
  logits = np.array([[1, 1, 1, 1, 1, 1, 1],        # all equal: never a hit
                     [3, 2, 2, 2, 2, 2, 0],        # label 1 tied with 4 others
                     [3, 2, 1, 1, 1, 1, 0],        # label 1 second, no tie
                     [0, np.nan, 1, 1, 1, 1, 1],   # NaN anywhere in the row
                     [np.nan] * 7], np.float32)
  labels = np.array([0, 1, 1, 0, 2])
  for k in (1, 2, 5, 7):
    got = np.asarray(topk.topk_correct(xp.asarray(logits), xp.asarray(labels), k, xp=xp))
    np.testing.assert_array_equal(got, _reference(logits, labels, k), err_msg=f"k={k}")
  assert np.asarray(topk.topk_correct(xp.asarray(logits), xp.asarray(labels), 5, xp=xp)
                    ).tolist() == [False, False, True, False, False]
  rng = np.random.RandomState(0)
  ints = rng.randint(0, 4, (200, 10)).astype(np.float32)  # many ties
  lab = rng.randint(0, 10, 200)
  for k in (1, 3, 5):
    np.testing.assert_array_equal(
        np.asarray(topk.topk_correct(xp.asarray(ints), xp.asarray(lab), k, xp=xp)),
        _reference(ints, lab, k))


def test_metric_collections_do_not_reward_constant_or_nan_logits():
  n, classes = 8, 46
  labels = jnp.arange(n, dtype=jnp.int32)
  mask = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)
  constant = jnp.zeros((n, classes))
  m = metrics.EvalMetrics.single_from_model_output(
      loss=jnp.ones(n), logits=constant, labels=labels, mask=mask).compute()
  assert float(m["top1"]) == 0.0 and float(m["top5"]) == 0.0
  assert np.all(m["per_class_top1"][:6] == 0.0)
  assert int(m["non_finite_logits"]) == 0
  nan = constant.at[1].set(jnp.nan).at[3, 5].set(jnp.inf).at[7].set(jnp.nan)  # 7 is padding
  m = metrics.EvalMetrics.single_from_model_output(
      loss=jnp.ones(n), logits=nan, labels=labels, mask=mask).compute()
  assert float(m["top5"]) == 0.0
  assert int(m["non_finite_logits"]) == 2     # padding never counts
  t = metrics.TrainMetrics.single_from_model_output(
      loss=jnp.ones(n), logits=constant, labels=labels, grad_norm=jnp.ones(()),
      learning_rate=jnp.ones(()), state_nonfinite=jnp.zeros(())).compute()
  assert float(t["top1"]) == 0.0


def test_eval_report_uses_the_same_rule_and_refuses_nan(tmp_path):
  logits = np.zeros((4, 6))
  logits[2, 2] = 1.0
  labels = np.array([0, 1, 2, 3])
  m = eval_report.classification_metrics(logits, labels)
  assert m["top1"] == 0.25 and m["top5"] == 0.25
  np.testing.assert_array_equal(m["per_class_accuracy"][:4], [0, 0, 1, 0])
  logits[1, 3] = np.nan
  logits[3, 0] = -np.inf
  with pytest.raises(ValueError, match=r"2 of 4 videos had NaN/Inf logits"):
    eval_report.classification_metrics(logits, labels)
  with pytest.raises(ValueError, match=r"2 of 4 .*NaN/Inf logits"):
    eval_report.write_eval_report(str(tmp_path), "val", logits=logits, labels=labels,
                                  class_names=list("abcdef"), confusion_png=False)
  # NaN in padding rows is fine.
  mask = np.array([1, 0, 1, 0])
  r = eval_report.write_eval_report(str(tmp_path), "val", logits=logits, labels=labels,
                                    class_names=list("abcdef"), mask=mask, confusion_png=False)
  assert r["num_videos"] == 2 and r["top1"] == 0.5


def test_evaluate_raises_naming_how_many_examples_had_nan_logits():
  mesh = parallel.make_mesh()
  n = jax.device_count()

  def eval_step(_, batch):
    return metrics.EvalMetrics.single_from_model_output(
        loss=jnp.ones(n), logits=batch["logits"], labels=batch["label"],
        mask=batch["mask"])

  def batches(bad_rows):
    for b in range(3):
      logits = np.random.RandomState(b).randn(n, 5).astype(np.float32)
      if b == 1:
        logits[:bad_rows] = np.nan
      yield {"logits": logits, "label": np.zeros(n, np.int32),
             "mask": np.ones(n, np.float32)}

  out = evaluate.evaluate(eval_step, None, batches(0), mesh)
  assert int(out["num_examples"]) == 3 * n and int(out["non_finite_logits"]) == 0
  with pytest.raises(topk.NonFiniteLogitsError,
                     match=rf"evaluation: 3 of {3 * n} examples had NaN/Inf logits"):
    evaluate.evaluate(eval_step, None, batches(3), mesh)
