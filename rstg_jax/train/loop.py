"""The training loop: init or resume, train, evaluate, checkpoint, summarise.

One function, `train_and_evaluate(config, workdir)`, used by `rstg_jax.main`,
the experiments and the tests. Workdir layout:

  workdir/checkpoints/<step>/   Orbax steps (last K plus the best by eval top-1)
  workdir/events.out.tfevents*  TensorBoard scalars (train_*, eval_*, steps_per_sec)
  workdir/summary.json          the final figures (written by process 0)

Resuming: if workdir/checkpoints holds a step, training continues from it with
the same data order (the batch of step s depends only on (seed, s)) and the
same dropout keys (fold_in(key, s)), so the result equals an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Iterator

from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import numpy as np

from rstg_jax import checkpointing
from rstg_jax import parallel
from rstg_jax.data import sliced_input
from rstg_jax.data import sync_mnist_input
from rstg_jax.models import syncmnist_model
from rstg_jax.train import evaluate as evaluate_lib
from rstg_jax.train import metrics as metrics_lib
from rstg_jax.train import optimizers
from rstg_jax.train import steps as steps_lib
from rstg_jax.train.train_state import TrainState


class _QuietLibraries:
  """absl log filter: drops INFO lines of chatty libraries (Orbax logs ~40 per save)."""

  _PREFIXES = ("orbax", "tensorflow_datasets")

  def filter(self, record) -> bool:
    if record.levelno >= 30:  # WARNING and above always pass
      return True
    name = record.pathname.replace(os.sep, "/")
    return not any(f"/{p}/" in name for p in self._PREFIXES)


def quiet_library_logs() -> None:
  """For entry points: hide INFO logs of Orbax and tfds (warnings still show)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
    handler.addFilter(_QuietLibraries())


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/Inf loss or gradient; the run was stopped."""


def create_state_fn(model: Any, tx: Any, video_shape: tuple[int, ...],
                    rng: jax.Array) -> Callable[[], TrainState]:
  """Returns init() -> TrainState (call it under jit, or under eval_shape)."""
  def init() -> TrainState:
    dummy = jnp.zeros((1,) + tuple(video_shape), jnp.uint8)
    variables = model.init({"params": rng, "dropout": rng}, dummy, train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             tx=tx, batch_stats=variables.get("batch_stats", {}))
  return init


def _json_safe(x: Any) -> Any:
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, np.ndarray):
    return _json_safe(x.tolist())
  if isinstance(x, (np.floating, float)):
    return None if not math.isfinite(float(x)) else float(x)
  if isinstance(x, np.integer):
    return int(x)
  return x


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort())


class _FiniteGuard:
  """Checks every step's loss and gradient norm one step late.

  Reading a value from the device waits for its step; checking step s after
  step s+1 was dispatched keeps the accelerator busy. `flush()` checks the
  pending step at once (before a checkpoint, so no NaN state is ever saved).
  """

  def __init__(self, on_failure: Callable[[int, float, float], None]):
    self._pending = None
    self._on_failure = on_failure

  def push(self, step: int, metrics: metrics_lib.TrainMetrics) -> None:
    self.flush()
    self._pending = (step, metrics.loss.total, metrics.grad_norm.total)

  def flush(self) -> None:
    if self._pending is None:
      return
    step, loss, grad_norm = self._pending
    self._pending = None
    loss, grad_norm = float(loss), float(grad_norm)
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
      self._on_failure(step, loss, grad_norm)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       builder: Any = None, mesh: Mesh | None = None,
                       model: Any = None, train_input: Any = None,
                       eval_input: Any = None, stop_at_step: int | None = None,
                       stop_requested: Callable[[], bool] | None = None
                       ) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint).

  Args:
    config: an experiment config (configs/syncmnist_*.py).
    workdir: output folder.
    builder: a prepared tfds builder; default: `config.data` (built if absent).
    mesh: the device mesh; default all devices.
    model: a Linen classifier (`apply(variables, video, train=...)` -> logits);
      default: syncmnist_model.build_model(config).
    train_input, eval_input: objects like sync_mnist_input.TrainInput
      (`iterate(start_step)`, `num_examples`, `steps_per_epoch`) and EvalInput
      (iterable of masked batches, `num_examples`); default: SyncMNIST from
      `builder`. Other data sets plug in here.
    stop_at_step: stop (with a checkpoint) after this step, as a pre-empted job
      would; the final evaluation and summary.json are then skipped.
    stop_requested: polled after every step; True saves a checkpoint and stops
      the same way (e.g. set by a SIGTERM handler). With several processes it
      must return the same value on all of them at the same step.

  Returns:
    The summary dict (also written to workdir/summary.json), or, when stopped
    early, {'stopped_at_step': step}.

  Raises:
    NonFiniteLossError: the loss or gradient became NaN/Inf; the message names
      the step, and the last good checkpoint stays in the workdir.
  """
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  mesh = parallel.make_mesh() if mesh is None else mesh
  parallel.check_batch_size(config.batch_size, mesh, "config.batch_size")
  per_process_eval_batch = parallel.per_process_batch_size(
      config.eval_batch_size, mesh, "config.eval_batch_size")
  num_steps = int(config.num_train_steps)

  if train_input is None or eval_input is None:
    if builder is None:
      builder = sync_mnist_input.load_builder(config.data)
    if train_input is None:
      def slice_input(index: int, count: int, batch_size: int, seed: int):
        return sync_mnist_input.TrainInput(
            builder, split=config.data.train_split, batch_size=batch_size,
            seed=seed, shuffle_buffer=config.data.shuffle_buffer,
            cache=config.data.cache, process_index=index, process_count=count)
      # This process's rows of every global batch, read from its own slices
      # of the split (config.data.num_slices; 0: one slice per process).
      train_input = sliced_input.SlicedTrainInput(
          slice_input, global_batch=config.batch_size, seed=config.seed,
          num_slices=config.data.get("num_slices") or jax.process_count())
    if eval_input is None:
      eval_input = sync_mnist_input.EvalInput(
          builder, split=config.data.eval_split,
          batch_size=per_process_eval_batch, cache=config.data.cache)
  video_shape = tuple(train_input.element_shape("video"))
  if model is None:
    model = syncmnist_model.build_model(config)
  lr_fn = optimizers.learning_rate_schedule(config.optimizer, num_steps)
  tx = optimizers.make_optimizer(config.optimizer, lr_fn)
  init_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  init_fn = create_state_fn(model, tx, video_shape, init_rng)
  repl = parallel.replicated(mesh)

  ckpt = checkpointing.Checkpointer(
      os.path.join(workdir, "checkpoints"), max_to_keep=config.checkpoint.keep,
      best_metric="eval_top1", async_save=config.checkpoint.async_save)
  meta: dict[str, Any] = {"train_seconds": 0.0, "eval_history": []}
  if ckpt.latest_step() is not None:
    template = checkpointing.abstract_state(jax.eval_shape(init_fn), repl)
    state, meta = ckpt.restore(template)
    logging.info("Resuming from step %d in %s", int(state.step), workdir)
  else:
    state = jax.jit(init_fn, out_shardings=repl)()
  start_step = int(jax.device_get(state.step))
  history: list[dict[str, Any]] = list(meta.get("eval_history", []))
  previous_seconds = float(meta.get("train_seconds", 0.0))

  writer = metric_writers.create_default_writer(
      workdir, just_logging=not is_main, asynchronous=True)
  if is_main:
    logging.info("Config:\n%s", config)
    logging.info("Parameters of model '%s':\n%s", config.model,
                 parameter_overview.get_parameter_overview(
                     jax.device_get(state.params), include_stats=False))
    logging.info("Devices: %d (%s), processes: %d, global batch %d, "
                 "train examples %d (this process), %d steps/epoch, eval "
                 "examples %d", mesh.devices.size, jax.devices()[0].platform,
                 jax.process_count(), config.batch_size,
                 train_input.num_examples, train_input.steps_per_epoch,
                 eval_input.num_examples)
    if start_step == 0:
      writer.write_hparams({k: v for k, v in _flat(config_to_dict(config)).items()
                            if isinstance(v, (int, float, str, bool))})

  p_train_step = parallel.jit_train_step(
      steps_lib.make_train_step(base_rng=dropout_rng,
                                loss_reduction=config.loss_reduction,
                                learning_rate_fn=lr_fn), mesh)
  p_eval_step = parallel.jit_eval_step(steps_lib.eval_step, mesh)

  def run_eval() -> dict[str, Any]:
    return evaluate_lib.evaluate(p_eval_step, state, eval_input, mesh,
                                 expected_examples=eval_input.num_examples)

  def make_meta(seconds: float) -> dict[str, Any]:
    return _json_safe({"model": config.model, "step": int(state.step),
                       "train_seconds": seconds, "eval_history": history,
                       "config": config_to_dict(config)})

  def on_non_finite(step: int, loss: float, grad_norm: float):
    ckpt.wait_until_finished()
    writer.flush()
    raise NonFiniteLossError(
        f"non-finite training loss {loss} (gradient norm {grad_norm}) at step "
        f"{step}; training stopped. The last good checkpoint is step "
        f"{ckpt.latest_step()} in {ckpt.directory}. Lower "
        "config.optimizer.learning_rate or set config.optimizer.grad_clip_norm.")

  guard = _FiniteGuard(on_non_finite)
  report = periodic_actions.ReportProgress(
      num_train_steps=num_steps, writer=writer if is_main else None,
      every_secs=config.progress_every_secs)
  eval_every = int(config.eval_every_steps)
  ckpt_every = int(config.checkpoint.every_steps)
  log_every = max(1, int(config.log_every_steps))
  batches: Iterator[dict[str, np.ndarray]] = train_input.iterate(start_step)
  train_metrics = None
  final = None  # the evaluation of the last step, once reached
  t_start = time.time()
  step = start_step
  for step in range(start_step + 1, num_steps + 1):
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      batch = parallel.host_to_global(next(batches), mesh)
      state, m = p_train_step(state, batch)
    guard.push(step, m)
    train_metrics = m if train_metrics is None else train_metrics.merge(m)
    report(step)
    if step % log_every == 0 or step == num_steps:
      guard.flush()
      computed = metrics_lib.scalars(train_metrics.compute(), "train_")
      writer.write_scalars(step, computed)
      train_metrics = None
    is_eval = (eval_every > 0 and step % eval_every == 0) or step == num_steps
    eval_metrics = None
    if is_eval:
      guard.flush()
      with report.timed("eval"):
        ev = run_eval()
      eval_metrics = {"eval_top1": float(ev["top1"])}
      history.append({"step": step, "top1": float(ev["top1"]),
                      "top5": float(ev["top5"]), "loss": float(ev["loss"]),
                      **({"pair_top1": float(ev["pair_top1"])}
                         if "pair_top1" in ev else {})})
      writer.write_scalars(step, metrics_lib.scalars(ev, "eval_"))
      if step == num_steps:
        final = ev
    stop_now = ((stop_at_step is not None and step >= stop_at_step)
                or (stop_requested is not None and stop_requested()))
    if (ckpt_every > 0 and step % ckpt_every == 0) or is_eval or stop_now:
      guard.flush()
      ckpt.save(state, make_meta(previous_seconds + time.time() - t_start),
                metrics=eval_metrics)
    if stop_now:
      break
  guard.flush()
  train_seconds = previous_seconds + time.time() - t_start
  ckpt.wait_until_finished()
  writer.flush()

  if step < num_steps:  # stopped early
    ckpt.close()
    writer.close()
    logging.info("Stopped after step %d with a checkpoint in %s", step,
                 ckpt.directory)
    return {"stopped_at_step": step}

  if final is None:  # the run had already ended: evaluate the restored state
    final = run_eval()
  best_step = ckpt.best_step()
  ckpt.close()
  summary = _json_safe({
      "model": config.model,
      "test_top1": float(final["top1"]),
      "test_top5": float(final["top5"]),
      "test_loss": float(final["loss"]),
      "test_num_examples": int(final["num_examples"]),
      "test_per_class_top1": final["per_class_top1"],
      # SyncMNIST: synchronous pair vs the other pairs of present digits.
      **({"test_pair_top1": float(final["pair_top1"])}
         if "pair_top1" in final else {}),
      "steps": int(jax.device_get(state.step)),
      "train_seconds": train_seconds,
      "num_params": parameter_overview.count_parameters(state.params),
      "best_step": best_step,
      "eval_history": history,
      "config": config_to_dict(config),
  })
  if is_main:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
    pair = ("" if "test_pair_top1" not in summary else
            f", synchronous-pair top-1 {summary['test_pair_top1']:.4f}")
    logging.info("Test top-1 %.4f, top-5 %.4f%s over %d videos after %d steps "
                 "(%.0f s training)", summary["test_top1"], summary["test_top5"],
                 pair, summary["test_num_examples"], summary["steps"],
                 train_seconds)
  writer.close()
  return summary


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out
