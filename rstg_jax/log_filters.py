"""What the command-line programs keep out of their logs.

`quiet_library_logs()` (called by every entry point: rstg_jax.main, predict,
tools.explain) installs one filter on absl's handler, through which every Python
log record passes. It drops, and only drops:
  - INFO lines of Orbax, tfds and grain (Orbax logs ~40 per save); their
    warnings and errors still show;
  - a few known lines that say nothing to the user, each matched by the file
    that logs it and the start of its message (NOISE below).
"""
from __future__ import annotations

import logging as py_logging
import os

from absl import logging

_CHATTY_LIBRARIES = ("orbax", "tensorflow_datasets", "grain")

# (file logging it, start of the message, why it is noise).
NOISE = (
    ("jax/_src/xla_bridge.py", "Unable to initialize backend 'tpu'",
     "JAX probes for a TPU on every start; no TPU (or libtpu) is not an error"),
    ("tensorflow_datasets/core/features/feature.py", "`FeatureConnector.dtype` is deprecated",
     "tfds's own decoder reads the deprecated field; nothing in this code does"),
    ("orbax/checkpoint/checkpoint_manager.py", "Requested `tracked_metric`",
     "periodic saves between evaluations have no metrics, on purpose: they only "
     "count towards the last K checkpoints (runtime/checkpointing.py)"),
)


def _path(record: py_logging.LogRecord) -> str:
  return record.pathname.replace(os.sep, "/")


class _QuietLibraries(py_logging.Filter):
  """absl handler filter: drops library INFO lines and the NOISE lines."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    path = _path(record)
    for file, start, _ in NOISE:
      if path.endswith("/" + file) and record.getMessage().startswith(start):
        return False
    if record.levelno >= py_logging.WARNING:
      return True
    return not any(f"/{p}/" in path for p in _CHATTY_LIBRARIES)


def quiet_library_logs() -> None:
  """For entry points: see the module docstring. Safe to call twice."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
    handler.addFilter(_QuietLibraries())
