"""SyncMNIST, model 'nonlocal' (see configs/syncmnist_common.py for the variants).

  python -m rstg_jax.main --config=configs/syncmnist_nonlocal_baseline.py:tiny --workdir=runs/nonlocal_baseline
"""
from __future__ import annotations

from rstg_configs import syncmnist_common


def get_config(arg: str | None = None):
  return syncmnist_common.make_config("nonlocal", arg)
