"""Shared pieces of the Something-Something end-to-end tests: a tiny fake tree
built with the real builders, the tiny configs on it, checkpoint arrays."""
from __future__ import annotations

import os
import pathlib

from rstg_configs import common as configs_common
from rstg_datasets.smt_common import fake_tree as ft
from rstg_datasets.something_something_v1 import SomethingSomethingV1
from rstg_jax.runtime import checkpointing

_REPO = pathlib.Path(__file__).resolve().parents[1]
NAMES = ft.fake_class_names()
SMT_CONFIGS = [os.path.basename(p)[:-3] for p in configs_common.experiment_files()
               if configs_common.get_config(p).task == "something_something"]


def videos(prefix: str, n: int, first_class: int, frames: int = 6):
  return [ft.FakeVideo(f"{prefix}{k}", NAMES[(first_class + 7 * k) % 174], frames + k % 3,
                       60, 80) for k in range(n)]


def build(root: pathlib.Path, builder_cls, writer) -> pathlib.Path:
  manual = root / "manual"
  writer(str(manual), {"train": videos("1", 8, 0), "validation": videos("2", 5, 3),
                       "test": [ft.FakeVideo("901", None, 5, 60, 80)]})
  ft.prepare(builder_cls, str(manual), str(root / "data"))
  return root / "data"


def build_v1(tmp_path_factory) -> pathlib.Path:
  return build(tmp_path_factory.mktemp("smt_v1"), SomethingSomethingV1, ft.write_v1_tree)


def tiny(name: str, data_dir, **overrides):
  """configs/<name>.py:tiny on the fake tree, 2 steps of batch 8 (8 devices)."""
  c = configs_common.get_config(f"{name}:tiny")
  c.data.data_dir = str(data_dir)
  c.batch_size = c.eval_batch_size = 8
  c.num_train_steps = 2
  c.eval_every_steps = 0
  c.checkpoint.every_steps = 1
  c.log_every_steps = 1
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c



def arrays(workdir, step):
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    return ckpt.restore_arrays(step)
  finally:
    ckpt.close()
