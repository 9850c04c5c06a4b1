"""Pure train and eval steps (jit and shardings are added by rstg_jax.runtime.parallel).

Batches are dicts: `video` [B, T, H, W, C] (uint8 or float, 0-255), `label`
[B] int32 and, for evaluation, `mask` [B] float32 (0 marks padding) plus
whatever keys the task's eval metrics need (`make_eval_step(extra_keys=...)`).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from rstg_jax.train import losses
from rstg_jax.train import metrics as metrics_lib
from rstg_jax.train.train_state import TrainState

Batch = dict[str, Any]


def make_train_step(
    *, base_rng: jax.Array, loss_reduction: str = "mean",
    learning_rate_fn: Callable[[Any], Any] | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, metrics_lib.TrainMetrics]]:
  """Returns train_step(state, batch) -> (new_state, TrainMetrics).

  Args:
    base_rng: the run's base key; the dropout key of step s is
      fold_in(base_rng, s), so nothing random needs checkpointing and a resumed
      run draws the same dropout masks as an uninterrupted one.
    loss_reduction: 'mean' or 'sum' over the global batch (see losses.py).
    learning_rate_fn: only to report the learning rate in the metrics.
  """
  if loss_reduction not in losses.REDUCTIONS:
    raise ValueError(
        f"config.loss_reduction={loss_reduction!r} is not one of "
        f"{losses.REDUCTIONS}")

  def train_step(state: TrainState, batch: Batch):
    dropout_rng = jax.random.fold_in(base_rng, state.step)
    labels = batch["label"].astype(jnp.int32)

    def loss_fn(params):
      logits, updates = state.apply_fn(
          state.variables(params), batch["video"], train=True,
          rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
      loss = losses.cross_entropy(logits, labels, reduction=loss_reduction)
      return loss, (logits, updates)

    grads, (logits, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(
        grads=grads,
        batch_stats=updates.get("batch_stats", state.batch_stats))
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    lr = (learning_rate_fn(state.step) if learning_rate_fn is not None
          else jnp.nan)
    # Checked by the loop before any save or evaluation: the loss and the
    # gradient are computed before the update, so they can be finite while
    # the updated parameters are not.
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in
                                  jax.tree.leaves((new_state.params,
                                                   new_state.batch_stats))]))
    metrics = metrics_lib.TrainMetrics.single_from_model_output(
        loss=per_example, logits=logits, labels=labels,
        grad_norm=optax.global_norm(grads),
        learning_rate=jnp.asarray(lr, jnp.float32),
        state_nonfinite=1.0 - finite.astype(jnp.float32))
    return new_state, metrics

  return train_step


def make_eval_step(metrics_cls: type = metrics_lib.EvalMetrics,
                   extra_keys: tuple[str, ...] = (), outputs: bool = False) -> Callable:
  """Returns eval_step(state, batch) -> `metrics_cls` of one (padded) batch.

  Padding (mask 0) never counts. `extra_keys` are batch keys passed on to the
  metrics (e.g. SyncMNIST's `digits` for the synchronous-pair accuracy). With
  `outputs` the step returns (metrics, {'logits' [B, K] float32, 'label' [B],
  'mask' [B]}): the same forward pass gives the rows of an evaluation report.
  """
  def eval_step(state: TrainState, batch: Batch):
    labels = batch["label"].astype(jnp.int32)
    logits = state.apply_fn(state.variables(), batch["video"], train=False)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    metrics = metrics_cls.single_from_model_output(
        loss=per_example, logits=logits, labels=labels,
        mask=batch["mask"].astype(jnp.float32),
        **{k: batch[k] for k in extra_keys})
    if not outputs:
      return metrics
    return metrics, {"logits": logits.astype(jnp.float32), "label": labels,
                     "mask": batch["mask"]}
  return eval_step


eval_step = make_eval_step()


def predict_step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
  """Per-clip logits [B, K] of a global batch, with the batch's other keys.

  With a replicated output sharding every process receives the rows of all
  processes (the gather of a multi-host multi-view evaluation).
  """
  logits = state.apply_fn(state.variables(), batch["video"], train=False)
  return {"logits": logits.astype(jnp.float32),
          **{k: v for k, v in batch.items() if k != "video"}}
