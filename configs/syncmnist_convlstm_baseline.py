"""SyncMNIST, model 'convlstm' (see configs/syncmnist_common.py for the variants).

  python -m rstg_jax.main --config=configs/syncmnist_convlstm_baseline.py:tiny --workdir=runs/convlstm_baseline
"""
from __future__ import annotations

from rstg_configs import syncmnist_common


def get_config(arg: str | None = None):
  return syncmnist_common.make_config("convlstm", arg)
