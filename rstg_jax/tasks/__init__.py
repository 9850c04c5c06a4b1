"""Tasks: what differs between experiments, chosen by name from `config.task`.

A task builds the model, the training and evaluation inputs, names its extra
metrics and summary fields, and writes what follows an evaluation (reports).
The training loop (`rstg_jax.train.loop`) only talks to the `Task` interface
(`rstg_jax.tasks.base`), so it never names a data set.
"""
from __future__ import annotations

import importlib

# config.task -> module defining `Task` (imported on demand: each pulls in its
# own data set code).
TASKS = {
    "sync_mnist": "rstg_jax.tasks.sync_mnist",
    "something_something": "rstg_jax.tasks.something_something",
}


class UnknownTaskError(ValueError):
  """config.task names no task."""


def get_task_class(name: str):
  if name not in TASKS:
    raise UnknownTaskError(f"config.task={name!r} is not a known task; known: "
                           f"{sorted(TASKS)}")
  return importlib.import_module(TASKS[name]).Task


def get_task(config, mesh):
  """The task object of `config.task` for this config and device mesh."""
  return get_task_class(config.task)(config, mesh)
