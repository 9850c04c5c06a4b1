"""Pre-emption: stop every process at the same step after a SIGTERM.

Cluster schedulers announce an eviction with SIGTERM (SLURM on pre-emption
and `--signal=TERM@<seconds>` before the time limit, Cloud TPU maintenance
events, Kubernetes); SIGKILL follows after a grace period. The training loop
asks `PreemptionWatcher.reached(step)` once per step; when it answers True
the loop saves a checkpoint at that step and returns, and the relaunched job
resumes from it (exactly, see rstg_jax/train/loop.py).

A Python SIGTERM handler only sets a flag. With one process the flag is the
answer. With several, all must stop at the same step: a checkpoint is one
collective save, and a process that stops while the others start the next
step would hang them. Each step therefore all-reduces the flags of every
process (the maximum of one int32 per device) and acts on the result one step
later: reading it then waits only for work that is already done, so the
device queue never drains and the check costs nothing measurable. Every
process reads the same reduced value after the same step, hence stops at the
same step, one or two steps after the signal.

Why not JAX's own pre-emption sync points
(`multihost_utils.reached_preemption_sync_point`, used by Orbax): they agree
on a step through the coordination service in the background, and with short
steps one process can pass the agreed step before learning it; in our tests a
two-process job then had one process stop and the other hang. The
all-reduce cannot disagree. `rstg_jax.runtime.distributed` therefore turns JAX's
pre-emption service (and its C++ SIGTERM handler) off.

Signals outside the `with` block keep their default behaviour (terminate).
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from rstg_jax.runtime import parallel

MODES = ("auto", "local", "collective")


class PreemptionWatcher:
  """Context manager answering "stop here for a pre-emption?" once per step.

  Args:
    mode: 'auto' ('local' for one process, else 'collective'), 'local' (this
      process's flag) or 'collective' (the all-reduced flags of all processes,
      one step late).
    signals: the signals that mean "save and stop".

  Usage:
    with PreemptionWatcher() as watcher:
      loop.train_and_evaluate(config, workdir, stop_requested=watcher.reached)
  """

  def __init__(self, mode: str = "auto",
               signals: tuple[int, ...] = (signal.SIGTERM,)):
    if mode not in MODES:
      raise ValueError(f"preemption mode {mode!r} is not one of {MODES}")
    if mode == "auto":
      mode = "local" if jax.process_count() == 1 else "collective"
    self.mode = mode
    self._signals = tuple(signals)
    self._received = threading.Event()
    self._previous: dict[int, Any] = {}
    self._pending: jax.Array | None = None   # last step's all-reduced flags
    self._reduce = None
    self._stopped = False

  @property
  def received(self) -> bool:
    """Whether this process got one of the signals."""
    return self._received.is_set()

  def _handler(self, signum, frame) -> None:
    del signum, frame
    # Only set a flag: the loop logs and saves at a step boundary.
    self._received.set()

  def __enter__(self) -> PreemptionWatcher:
    if threading.current_thread() is not threading.main_thread():
      logging.warning("Training outside the main thread: SIGTERM will not "
                      "trigger a checkpoint (Python handles signals only in "
                      "the main thread).")
      return self
    for s in self._signals:
      self._previous[s] = signal.signal(s, self._handler)
    return self

  def __exit__(self, *exc) -> None:
    for s, previous in self._previous.items():
      # None: the old handler was not set from Python; fall back to default.
      signal.signal(s, signal.SIG_DFL if previous is None else previous)
    self._previous.clear()

  def request(self) -> None:
    """Asks for a stop as a SIGTERM would (e.g. from a callback or a test)."""
    os.kill(os.getpid(), self._signals[0])

  def _all_reduce_flags(self) -> jax.Array:
    """Dispatches max over every device of this process's flag (async)."""
    if self._reduce is None:
      mesh = parallel.make_mesh()
      self._sharding = parallel.batch_sharding(mesh)
      self._reduce = jax.jit(jnp.max, out_shardings=parallel.replicated(mesh))
    local = np.full((jax.local_device_count(),), int(self.received), np.int32)
    return self._reduce(
        jax.make_array_from_process_local_data(self._sharding, local))

  def reached(self, step: int | None = None) -> bool:
    """True on every process at the same step once a stop was requested.

    Must be called once per step by every process, in the same order (it is
    the loop's `stop_requested` callback). `step` only labels the log line.
    """
    if self.mode == "local":
      stop = self.received
    else:
      previous, self._pending = self._pending, self._all_reduce_flags()
      stop = previous is not None and bool(previous.addressable_data(0))
    if stop and not self._stopped:
      self._stopped = True
      logging.warning("Pre-emption requested (signal): process %d stops %s "
                      "with a checkpoint.", jax.process_index(),
                      "here" if step is None else f"after step {step}")
    return stop
