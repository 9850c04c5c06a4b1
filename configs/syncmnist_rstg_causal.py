"""SyncMNIST, model 'rstg', causal: the graph normalises each frame on its own
(graph.norm_scope='per_frame'), so the trained model streams, one frame at a time
(`python -m rstg_jax.predict --stream`). Everything else as configs/syncmnist_rstg.py
(variants in configs/syncmnist_common.py); the paper's model is that file.

  python -m rstg_jax.main --config=configs/syncmnist_rstg_causal.py:tiny --workdir=runs/causal
"""
from __future__ import annotations

from rstg_configs import syncmnist_common


def get_config(arg: str | None = None):
  c = syncmnist_common.make_config("rstg", arg)
  # The paper's (clip) scope normalises over (T, N, D): frame 1 would see frame 10.
  c.model.graph.norm_scope = "per_frame"
  return c
