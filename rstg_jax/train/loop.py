"""The training loop: set up or resume, train, evaluate, summarise.

`train_and_evaluate(config, workdir)` (mode 'train') and
`evaluate_checkpoint(config, workdir)` (mode 'eval') are what `rstg_jax.main`,
the experiments and the tests call. Everything task-specific (model, inputs,
extra metrics, reports) comes from the task named by `config.task`
(`rstg_jax.tasks`). The parts, in the order a run goes through them:

  set_up        config checks, the task's data, model, state (restored from the
                workdir, or initialised, optionally from config.init_from),
                steps, writers, and what the user sees at start
  train         the step loop: metrics, progress (clips/s, ETA, input wait),
                periodic evaluation and checkpoints, non-finite checks
  evaluate      one pass over the task's evaluation input (every video once)
  summarise     the task's final report and workdir/summary.json

Workdir layout:
  workdir/checkpoints/<step>/   Orbax steps (last K plus the best by eval top-1)
  workdir/events.out.tfevents*  TensorBoard scalars (train_*, eval_*, clips_per_sec)
  workdir/summary.json          the final figures (written by process 0)
  workdir/<report files>        the task's final report (e.g. the multi-view
                                evaluation of Something-Something)

Resuming: if workdir/checkpoints holds a step, training continues from it with
the same data order (the batch of step s depends only on (seed, s)) and the
same dropout keys (fold_in(key, s)), so the result equals an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import time
from typing import Any, Callable, Iterator

from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions
from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import numpy as np

from rstg_jax import config_check
from rstg_jax import tasks as tasks_lib
from rstg_jax.runtime import checkpointing
from rstg_jax.runtime import parallel
from rstg_jax.train import evaluate as evaluate_lib
from rstg_jax.train import init_from as init_from_lib
from rstg_jax.train import metrics as metrics_lib
from rstg_jax.train import optimizers
from rstg_jax.train import steps as steps_lib
from rstg_jax.train.train_state import TrainState

MODES = ("train", "eval")


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/Inf loss, gradient or state; the run was stopped."""


ConfigError = config_check.ConfigError  # a config value that cannot run


def user_errors() -> tuple[type[Exception], ...]:
  """Errors caused by the user's config, data or paths: the entry point prints
  their one-line message without a traceback."""
  from rstg_jax.data import smt_input  # pylint: disable=g-import-not-at-top
  return (ConfigError, tasks_lib.UnknownTaskError, init_from_lib.InitFromError,
          checkpointing.CheckpointMismatchError, smt_input.DataError,
          FileNotFoundError)


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


def parameter_parts(params: Any) -> dict[str, int]:
  """Parameter counts per part: 'backbone', 'graph' (any module named graph*),
  'head' (the classifier `pred`)."""
  parts = {"backbone": 0, "graph": 0, "head": 0}
  for path, leaf in traverse_util.flatten_dict(params).items():
    if any(str(p).startswith("graph") for p in path):
      part = "graph"
    elif path[0] == "pred":
      part = "head"
    else:
      part = "backbone"
    parts[part] += int(np.size(leaf))
  return parts


def check_config(config: ml_collections.ConfigDict) -> None:
  """Errors that need no data, raised before anything loads."""
  tasks_lib.get_task_class(config.task)
  if config.mode not in MODES:
    raise ConfigError(f"config.mode={config.mode!r} is not one of {MODES}")
  if config.mode == "eval" and not config.init_from:
    raise ConfigError("config.mode='eval' needs config.init_from (a workdir, a "
                      "checkpoint step folder or an imported checkpoint)")
  if config.mode == "train":
    config_check.check_num_train_steps(config.num_train_steps)
  if config.init_from:
    init_from_lib.resolve(config.init_from)


class _FiniteGuard:
  """Checks every step's loss, gradient norm and updated state one step late.

  Reading a value from the device waits for its step; checking step s after
  step s+1 was dispatched keeps the accelerator busy. `flush()` checks the
  pending step at once: before every checkpoint and evaluation, so no state
  with NaN/Inf is ever saved, evaluated or called best.
  """

  def __init__(self, on_failure: Callable[[int, float, float, bool], None]):
    self._pending = None
    self._on_failure = on_failure

  def push(self, step: int, metrics: metrics_lib.TrainMetrics) -> None:
    self.flush()
    self._pending = (step, metrics.loss.total, metrics.grad_norm.total,
                     metrics.state_nonfinite.total)

  def flush(self) -> None:
    if self._pending is None:
      return
    step, loss, grad_norm, nonfinite = self._pending
    self._pending = None
    loss, grad_norm, state_bad = float(loss), float(grad_norm), float(nonfinite) > 0
    if state_bad or not (math.isfinite(loss) and math.isfinite(grad_norm)):
      self._on_failure(step, loss, grad_norm, state_bad)


@dataclasses.dataclass
class Run:
  """Everything a run needs once it is set up."""
  config: ml_collections.ConfigDict
  workdir: str
  task: Any
  mesh: Mesh
  state: TrainState
  train_step: Callable
  eval_step: Callable
  predict_step: Callable
  checkpointer: checkpointing.Checkpointer | None
  writer: Any
  start_step: int
  history: list[dict[str, Any]]
  previous_seconds: float
  num_params: int
  params_per_part: dict[str, int]
  train_input: Any = None
  _eval_input: Any = None
  init_report: list[str] = dataclasses.field(default_factory=list)
  last_eval: tuple[int, dict[str, Any]] | None = None  # (step, evaluation)

  @property
  def is_main(self) -> bool:
    return jax.process_index() == 0

  @property
  def eval_input(self) -> Any:
    if self._eval_input is None:
      self._eval_input = self.task.eval_input()
    return self._eval_input

  def meta(self, seconds: float) -> dict[str, Any]:
    return _json_safe({"task": self.config.task, "step": int(self.state.step),
                       "train_seconds": seconds, "eval_history": self.history,
                       "config": config_to_dict(self.config)})

  def close(self) -> None:
    if self.checkpointer is not None:
      self.checkpointer.close()
    self.writer.close()


def _check_lost_checkpoints(config, workdir: str) -> None:
  """A workdir with a run's traces but no checkpoint lost its checkpoints."""
  traces = [p for p in (os.path.join(workdir, "summary.json"),
                        *glob.glob(os.path.join(workdir, "events.out.tfevents*")))
            if os.path.exists(p)]
  if traces and not config.allow_restart:
    raise ConfigError(
        f"{workdir} holds a previous run ({os.path.basename(traces[0])}) but no "
        f"checkpoint in {os.path.join(workdir, 'checkpoints')}: were they deleted? "
        "Use another --workdir, or set --config.allow_restart=True to start afresh "
        "beside the old files")
  if traces:
    logging.warning("%s: no checkpoint but a previous run's files; starting afresh "
                    "(config.allow_restart=True)", workdir)


def set_up(config: ml_collections.ConfigDict, workdir: str, *, mesh: Mesh | None = None,
           task: Any = None) -> Run:
  """Checks the config, prepares the task's data, builds or restores the state."""
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_mesh() if mesh is None else mesh
  parallel.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
  training = config.mode == "train"
  if training:
    parallel.check_batch_size(config.batch_size, mesh, "config.batch_size")
  task = tasks_lib.get_task(config, mesh) if task is None else task
  task.prepare()
  train_input = task.train_input() if training else None
  video_shape = tuple(task.video_shape())
  model = task.build_model()
  num_steps = max(int(config.num_train_steps), 1)
  lr_fn = optimizers.learning_rate_schedule(config.optimizer, num_steps)
  tx = optimizers.make_optimizer(config.optimizer, lr_fn)
  init_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  init_fn = create_state_fn(model, tx, video_shape, init_rng)
  repl = parallel.replicated(mesh)

  ckpt = None
  meta: dict[str, Any] = {}
  init_report: list[str] = []
  if training:
    ckpt = checkpointing.Checkpointer(
        os.path.join(workdir, "checkpoints"), max_to_keep=config.checkpoint.keep,
        best_metric="eval_top1", async_save=config.checkpoint.async_save)
  if ckpt is not None and ckpt.latest_step() is not None:
    template = checkpointing.abstract_state(jax.eval_shape(init_fn), repl)
    state, meta = ckpt.restore(template)
    logging.info("Resuming from step %d in %s", int(state.step), workdir)
  else:
    if training:
      _check_lost_checkpoints(config, workdir)
    if config.init_from:
      source, name = init_from_lib.load(config.init_from)
      if not training:  # before anything compiles
        shapes = jax.eval_shape(init_fn)
        init_from_lib.check_exact(shapes.params, shapes.batch_stats, source, name)
    state = jax.jit(init_fn, out_shardings=repl)()
    if config.init_from:
      if training:
        params, stats, report = init_from_lib.merge_for_fine_tuning(
            state.params, state.batch_stats, source, name)
        init_report = report.lines()
      else:
        params, stats = source["params"], source["batch_stats"]
        init_report = [f"evaluating {name}"]
      params, stats = parallel.replicate((params, stats), mesh)
      # The optimiser state starts afresh for the loaded parameters.
      state = jax.jit(lambda p, s: TrainState.create(
          apply_fn=model.apply, params=p, tx=tx, batch_stats=s),
          out_shardings=repl)(params, stats)

  # Process 0 writes (TensorBoard and log lines); the others would only repeat
  # its lines (the metrics are global), so they write nothing.
  writer = (metric_writers.create_default_writer(workdir, asynchronous=True)
            if jax.process_index() == 0 else metric_writers.MultiWriter([]))
  host_params = jax.device_get(state.params)
  run = Run(
      config=config, workdir=workdir, task=task, mesh=mesh, state=state,
      train_step=parallel.jit_train_step(steps_lib.make_train_step(
          base_rng=dropout_rng, loss_reduction=config.loss_reduction,
          learning_rate_fn=lr_fn), mesh),
      eval_step=parallel.jit_eval_step(
          steps_lib.make_eval_step(task.eval_metrics, task.eval_batch_keys,
                                   outputs=task.eval_outputs), mesh),
      predict_step=parallel.jit_eval_step(steps_lib.predict_step, mesh),
      checkpointer=ckpt, writer=writer,
      start_step=int(jax.device_get(state.step)),
      history=list(meta.get("eval_history", [])),
      previous_seconds=float(meta.get("train_seconds", 0.0)),
      num_params=parameter_overview.count_parameters(host_params),
      params_per_part=parameter_parts(host_params),
      train_input=train_input, init_report=init_report)
  if run.is_main:
    _log_start(run, host_params)
  return run


def _log_start(run: Run, host_params: Any) -> None:
  """What the user sees at start: task, config, parameters, data, devices."""
  config = run.config
  logging.info("Task %s, mode %s. Config:\n%s", config.task, config.mode, config)
  logging.info("Parameters of %s:\n%s", config.model.get("name", "the model"),
               parameter_overview.get_parameter_overview(host_params,
                                                         include_stats=False))
  parts = "\n".join(f"  {k:<9} {v:>13,}" for k, v in run.params_per_part.items())
  logging.info("Parameters per part:\n%s\n  %-9s %13s", parts, "total",
               f"{run.num_params:,}")
  logging.info("Data: %s", run.task.describe())
  for line in run.init_report:
    logging.info("%s", line)
  train = run.train_input
  logging.info(
      "Devices: %d (%s), processes: %d, global batch %d%s", run.mesh.devices.size,
      jax.devices()[0].platform, jax.process_count(), config.batch_size,
      "" if train is None else f", train examples {train.num_examples} (this "
      f"process), {train.steps_per_epoch} steps/epoch")
  if run.start_step == 0 and config.mode == "train":
    run.writer.write_hparams({k: v for k, v in traverse_util.flatten_dict(
        config_to_dict(config), sep=".").items()
        if isinstance(v, (int, float, str, bool))})


def evaluate(run: Run) -> dict[str, Any]:
  """The task's evaluation of the current state (padding never counts)."""
  return evaluate_lib.evaluate(run.eval_step, run.state, run.eval_input, run.mesh,
                               expected_examples=run.eval_input.num_examples)


def _history_entry(run: Run, step: int, ev: dict[str, Any]) -> dict[str, Any]:
  return {"step": step, "top1": float(ev["top1"]), "top5": float(ev["top5"]),
          "loss": float(ev["loss"]), **run.task.summary_fields(ev)}


def _non_finite_handler(run: Run) -> Callable[[int, float, float, bool], None]:
  def on_failure(step: int, loss: float, grad_norm: float, state_bad: bool):
    ckpt = run.checkpointer
    ckpt.wait_until_finished()
    run.writer.flush()
    opt = run.config.optimizer
    hints = [f"lower config.optimizer.learning_rate (now {opt.learning_rate:g})"]
    if not opt.grad_clip_norm:
      hints.append("set config.optimizer.grad_clip_norm (e.g. 1.0)")
    what = ("the parameters or statistics after the update are NaN/Inf" if state_bad
            else f"loss {loss}, gradient norm {grad_norm}")
    good = ckpt.latest_step()
    raise NonFiniteLossError(
        f"step {step}: {what}; training stopped and step {step} was not saved. "
        + (f"The last good checkpoint is step {good} in {ckpt.directory} (every "
           "saved step was checked). " if good is not None else
           "No checkpoint was saved before it. ")
        + "To continue: " + " or ".join(hints) + ".")
  return on_failure


class _Throughput:
  """Clips/s and the share of step time spent waiting for input, per log period."""

  def __init__(self, clips_per_step: int):
    self.clips_per_step = clips_per_step
    self.reset()

  def reset(self) -> None:
    self.t0, self.steps, self.wait = time.time(), 0, 0.0

  def add(self, wait_seconds: float) -> None:
    self.steps += 1
    self.wait += wait_seconds

  def scalars(self) -> dict[str, float]:
    elapsed = max(time.time() - self.t0, 1e-9)
    out = {"clips_per_sec": self.steps * self.clips_per_step / elapsed,
           "input_wait_ms_per_step": 1e3 * self.wait / max(self.steps, 1),
           "input_wait_fraction": self.wait / elapsed}
    self.reset()
    return out


def train(run: Run, *, stop_at_step: int | None = None,
          stop_requested: Callable[[], bool] | None = None) -> int:
  """Runs the steps after run.start_step; returns the last step done."""
  config = run.config
  num_steps = int(config.num_train_steps)
  guard = _FiniteGuard(_non_finite_handler(run))
  # Progress lines (steps/s, ETA) from process 0 only; elsewhere it never fires.
  report = periodic_actions.ReportProgress(
      num_train_steps=num_steps if run.is_main else None,
      writer=run.writer if run.is_main else None,
      every_secs=config.progress_every_secs if run.is_main else None)
  eval_every = int(config.eval_every_steps)
  ckpt_every = int(config.checkpoint.every_steps)
  log_every = max(1, int(config.log_every_steps))
  batches: Iterator[dict[str, np.ndarray]] = run.train_input.iterate(run.start_step)
  throughput = _Throughput(config.batch_size)
  train_metrics = None
  t_start = time.time()
  step = run.start_step
  for step in range(run.start_step + 1, num_steps + 1):
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      t_wait = time.time()
      host_batch = next(batches)
      throughput.add(time.time() - t_wait)
      run.state, m = run.train_step(run.state, parallel.host_to_global(host_batch,
                                                                       run.mesh))
    guard.push(step, m)
    train_metrics = m if train_metrics is None else train_metrics.merge(m)
    report(step)
    if step % log_every == 0 or step == num_steps:
      guard.flush()
      computed = metrics_lib.scalars(train_metrics.compute(), "train_")
      computed.pop("train_state_nonfinite", None)
      run.writer.write_scalars(step, {**computed, **throughput.scalars()})
      train_metrics = None
    is_eval = (eval_every > 0 and step % eval_every == 0) or step == num_steps
    eval_metrics = None
    if is_eval:
      guard.flush()
      with report.timed("eval"):
        ev = evaluate(run)
      eval_metrics = {"eval_top1": float(ev["top1"])}
      run.history.append(_history_entry(run, step, ev))
      run.last_eval = (step, ev)
      run.writer.write_scalars(step, metrics_lib.scalars(ev, "eval_"))
      throughput.reset()  # evaluation time is not training throughput
    stop_now = ((stop_at_step is not None and step >= stop_at_step)
                or (stop_requested is not None and stop_requested()))
    if (ckpt_every > 0 and step % ckpt_every == 0) or is_eval or stop_now:
      guard.flush()
      run.checkpointer.save(
          run.state, run.meta(run.previous_seconds + time.time() - t_start),
          metrics=eval_metrics)
    if stop_now:
      break
  guard.flush()
  run.previous_seconds += time.time() - t_start
  run.checkpointer.wait_until_finished()
  run.writer.flush()
  return step


def summarise(run: Run, final: dict[str, Any] | None = None) -> dict[str, Any]:
  """The task's final report plus the summary (written to workdir/summary.json).

  Summary fields of the evaluation split are prefixed with its name, e.g.
  `test_top1` (SyncMNIST) or `validation_top1` (Something-Something).
  """
  if final is None:
    final = evaluate(run)
  p = run.task.eval_split
  with logging_time("final report"):
    report = run.task.final_report(run.state, run.predict_step, run.workdir, final)
  summary = _json_safe({
      "task": run.config.task,
      "mode": run.config.mode,
      f"{p}_top1": float(final["top1"]),
      f"{p}_top5": float(final["top5"]),
      f"{p}_loss": float(final["loss"]),
      f"{p}_num_examples": int(final["num_examples"]),
      f"{p}_per_class_top1": final["per_class_top1"],
      **{f"{p}_{k}": v for k, v in run.task.summary_fields(final).items()},
      **report,
      "steps": int(jax.device_get(run.state.step)),
      "train_seconds": run.previous_seconds,
      "num_params": run.num_params,
      "params_per_part": run.params_per_part,
      "best_step": None if run.checkpointer is None else run.checkpointer.best_step(),
      "init_from": run.config.init_from or None,
      "eval_history": run.history,
      "config": config_to_dict(run.config),
  })
  if run.is_main:
    path = os.path.join(run.workdir, "summary.json")
    summary["headline"] = f"{run.task.summary_line(summary)}; summary: {path}"
    with open(path, "w") as f:
      json.dump(summary, f, indent=1)
    logging.info("%s", summary["headline"])
  return summary


class logging_time:  # pylint: disable=invalid-name
  """Logs how long a block took (final reports can take minutes)."""

  def __init__(self, what: str):
    self.what = what

  def __enter__(self):
    self.t0 = time.time()

  def __exit__(self, *exc):
    if exc[0] is None:
      logging.info("%s took %.1f s", self.what, time.time() - self.t0)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       mesh: Mesh | None = None, task: Any = None,
                       stop_at_step: int | None = None,
                       stop_requested: Callable[[], bool] | None = None
                       ) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint).

  Args:
    config: an experiment config (configs/*.py; schema in configs/common.py).
    workdir: output folder.
    mesh: the device mesh; default all devices.
    task: a prepared-to-be task object; default: the one `config.task` names.
    stop_at_step: stop (with a checkpoint) after this step, as a pre-empted job
      would; the final evaluation and summary.json are then skipped.
    stop_requested: polled after every step; True saves a checkpoint and stops
      the same way (e.g. set by a SIGTERM handler). With several processes it
      must return the same value on all of them at the same step.

  Returns:
    The summary dict (also written to workdir/summary.json), or, when stopped
    early, {'stopped_at_step': step}.

  Raises:
    NonFiniteLossError: the loss, gradient or updated state became NaN/Inf;
      the message names the step and the last good checkpoint.
  """
  if config.mode != "train":
    return evaluate_checkpoint(config, workdir, mesh=mesh, task=task)
  run = set_up(config, workdir, mesh=mesh, task=task)
  try:
    step = train(run, stop_at_step=stop_at_step, stop_requested=stop_requested)
    if step < int(config.num_train_steps):
      logging.info("Stopped after step %d with a checkpoint in %s", step,
                   run.checkpointer.directory)
      return {"stopped_at_step": step}
    # A run restarted after its last step has no evaluation of this process:
    # summarise evaluates the restored state.
    final = run.last_eval[1] if run.last_eval and run.last_eval[0] == step else None
    return summarise(run, final)
  finally:
    run.close()


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *,
                        mesh: Mesh | None = None, task: Any = None) -> dict[str, Any]:
  """mode 'eval': evaluates config.init_from (no training) into workdir."""
  run = set_up(config, workdir, mesh=mesh, task=task)
  try:
    return summarise(run)
  finally:
    run.close()
