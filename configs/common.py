"""The config schema every experiment follows, and helpers to load config files.

Top-level keys (the same for every task):
  task            name of the task module (`rstg_jax.tasks`: 'sync_mnist',
                  'something_something'): model, inputs, metrics, reports
  mode            'train' (train, evaluate, resume) or 'eval' (evaluate
                  `init_from` without training)
  init_from       '' or a checkpoint: a workdir (its latest step), a step folder,
                  or an imported checkpoint (`rstg_jax.tools.import_checkpoint`)
  allow_restart   start afresh in a workdir that holds events / summary.json but
                  no checkpoint (refused by default: the checkpoints were lost)
  seed
  data            ConfigDict read by the task's input pipelines
  model           ConfigDict read by the task's model builder (`name`,
                  `num_classes`, ...)
  batch_size, eval_batch_size (global), loss_reduction ('sum' | 'mean'),
  optimizer (ConfigDict, `rstg_jax.train.optimizers`), num_train_steps,
  log_every_steps, progress_every_secs, eval_every_steps (0: only at the end),
  checkpoint (every_steps, keep, async_save)
"""
from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import ml_collections
from ml_collections import config_dict

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
# Modules of this folder that are not experiments.
SHARED_MODULES = ("__init__", "common", "smt_common", "syncmnist_common")


def check_variant(arg: str | None, variants: Sequence[str]) -> str:
  arg = (arg or "").strip()
  if arg not in variants:
    raise ValueError(f"unknown config variant {arg!r}; use one of {tuple(variants)}")
  return arg


def optimizer(**overrides: Any) -> ml_collections.ConfigDict:
  """`config.optimizer` (rstg_jax/train/optimizers.py): the original's Nesterov."""
  o = dict(
      name="nesterov",         # 'nesterov' | 'momentum' | 'adam' | 'adamw'
      learning_rate=1e-4,
      schedule="constant",     # 'constant' | 'warmup_cosine'
      warmup_steps=0,
      end_lr_factor=0.0,       # warmup_cosine: final lr / peak lr
      momentum=0.9,
      b1=0.9, b2=0.999, eps=1e-8,
      weight_decay=0.0,        # never on biases / norms
      grad_clip_norm=0.0,      # 0 = no clipping
      graph_lr_factor=1.0)     # learning-rate factor of the graph modules
  unknown = set(overrides) - set(o)
  if unknown:
    raise KeyError(f"unknown optimizer fields {sorted(unknown)}")
  o.update(overrides)
  return ml_collections.ConfigDict(o)


def base_config(*, task: str, data: ml_collections.ConfigDict,
                model: ml_collections.ConfigDict, batch_size: int,
                eval_batch_size: int, num_train_steps: int,
                loss_reduction: str = "sum",
                optimizer_config: ml_collections.ConfigDict | None = None,
                log_every_steps: int = 50, progress_every_secs: float = 60.0,
                eval_every_steps: int = 10_000, checkpoint_every_steps: int = 5000,
                checkpoint_keep: int = 3, seed: int = 0) -> ml_collections.ConfigDict:
  """An experiment config with every top-level key of the schema."""
  c = ml_collections.ConfigDict()
  c.task = task
  c.mode = "train"
  c.init_from = ""
  c.allow_restart = False
  c.seed = seed
  c.data = data
  c.model = model
  c.batch_size = batch_size
  c.eval_batch_size = eval_batch_size
  c.loss_reduction = loss_reduction
  c.optimizer = optimizer_config or optimizer()
  c.num_train_steps = num_train_steps
  c.log_every_steps = log_every_steps
  c.progress_every_secs = progress_every_secs
  c.eval_every_steps = eval_every_steps
  c.checkpoint = ml_collections.ConfigDict(dict(
      every_steps=checkpoint_every_steps, keep=checkpoint_keep, async_save=True))
  return c


def placeholder(kind):
  """A field that is None by default and takes a `kind` override."""
  return config_dict.placeholder(kind)


def experiment_files() -> list[str]:
  """Every experiment config file of this folder (absolute paths, sorted)."""
  return sorted(p for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
                if os.path.splitext(os.path.basename(p))[0] not in SHARED_MODULES)


def load_config_file(path: str | os.PathLike):
  """Imports a config file by path; returns the module."""
  path = os.fspath(path)
  name = "rstg_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None:
    raise FileNotFoundError(f"no config file {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(spec: str | os.PathLike) -> ml_collections.ConfigDict:
  """'configs/smt_i3d.py:tiny' (or a bare name 'smt_i3d:tiny') -> the config."""
  path, _, arg = os.fspath(spec).partition(":")
  if not path.endswith(".py"):
    path = os.path.join(CONFIG_DIR, path + ".py")
  return load_config_file(path).get_config(arg or None)
