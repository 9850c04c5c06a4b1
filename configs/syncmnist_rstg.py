"""SyncMNIST, model 'rstg' (see configs/syncmnist_common.py for the variants).

  python -m rstg_jax.main --config=configs/syncmnist_rstg.py:tiny --workdir=runs/rstg
"""
from __future__ import annotations

import importlib.util
import os


def _common():
  # Config files are loaded by path, not as a package: load the sibling module.
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "syncmnist_common.py")
  spec = importlib.util.spec_from_file_location("syncmnist_common", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None):
  return _common().make_config("rstg", arg)
