"""The entry points' log filter drops exactly the known noise and library INFO lines."""
from __future__ import annotations

import logging

import pytest

from rstg_jax import log_filters

SITE = "/usr/lib/python3.11/site-packages/"


def _record(path: str, level: int, msg: str, *args) -> logging.LogRecord:
  return logging.LogRecord("absl", level, SITE + path, 1, msg, args, None)


@pytest.mark.parametrize("file, start, _", log_filters.NOISE)
def test_known_noise_is_dropped_and_nothing_else_of_its_file(file, start, _):
  f = log_filters._QuietLibraries()  # pylint: disable=protected-access
  assert not f.filter(_record(file, logging.WARNING, start + " %s", "(details)"))
  assert not f.filter(_record(file, logging.INFO, start + " (details)"))
  # Another warning from the same file, or the same words from another file, pass.
  assert f.filter(_record(file, logging.WARNING, "something else went wrong"))
  assert f.filter(_record("rstg_jax/train/loop.py", logging.WARNING, start))


def test_library_info_dropped_warnings_kept():
  f = log_filters._QuietLibraries()  # pylint: disable=protected-access
  save = "orbax/checkpoint/checkpoint_manager.py"
  assert not f.filter(_record(save, logging.INFO, "Saving checkpoint at step 4"))
  assert f.filter(_record(save, logging.WARNING, "Saving failed"))
  assert f.filter(_record("rstg_jax/train/loop.py", logging.INFO, "Resuming from step 4"))


def test_installed_once():
  from absl import logging as absl_logging
  handler = absl_logging.get_absl_handler()
  before = list(handler.filters)
  try:
    log_filters.quiet_library_logs()
    log_filters.quiet_library_logs()
    added = [f for f in handler.filters if f not in before]
    assert len(added) <= 1
    assert any(isinstance(f, log_filters._QuietLibraries) for f in handler.filters)  # pylint: disable=protected-access
  finally:
    for f in list(handler.filters):
      if f not in before:
        handler.removeFilter(f)
