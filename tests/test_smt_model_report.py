"""The model report: FLOP counting through scans, and figures for the configs."""
from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_configs import common as configs_common
from rstg_jax.models.backbones.video_conv import VideoConv
from rstg_jax.models.classifiers import smt_model
from rstg_jax.tools import model_report
import model_helpers

CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def test_xla_flops_counts_every_iteration_of_nested_scans():
  w = jnp.ones((64, 64))

  def f(x):
    def outer(c, _):
      inner = lambda c2, _: (jnp.tanh(c2 @ w), None)
      return jax.lax.scan(inner, c, None, length=3)[0], None
    return jax.lax.scan(outer, x, None, length=10)[0]

  matmuls = 2 * 8 * 64 * 64 * 3 * 10
  # XLA alone sees each loop body once (30x too few matmul FLOPs here).
  raw = jax.jit(f).lower(jnp.ones((8, 64))).cost_analysis()["flops"]
  assert raw < matmuls / 20
  got = model_report.xla_flops(f, jnp.ones((8, 64)))
  assert matmuls <= got <= matmuls * 1.02   # + tanh and loop counters


def _taps(n_in: int, k: int, stride: int, pad: tuple[int, int]) -> tuple[int, int]:
  """(all, valid) kernel taps summed over the outputs of one conv dimension."""
  n_out = (n_in + sum(pad) - k) // stride + 1
  valid = sum(1 for o in range(n_out) for j in range(k)
              if 0 <= o * stride - pad[0] + j < n_in)
  return n_out * k, valid


def test_i3d_flops_match_the_convolution_arithmetic():
  """I3D-R50 at 32x224x224 against its convolutions' arithmetic, from each conv's
  shapes: XLA counts the multiply-adds of kernel taps that fall inside the input (not
  on zero padding), so it must match that count (+ about 1% for BN, ReLU, pooling);
  counting every tap (the usual convention) gives 302.6 GFLOPs."""
  config = configs_common.get_config(os.path.join(CONFIG_DIR, "smt_i3d.py"))
  row = model_report.report(config, "smt_i3d")
  every, inside = [], []

  def record(next_fun, args, kwargs, context):
    mdl = context.module
    if isinstance(mdl, VideoConv) and context.method_name == "__call__":
      x = args[0]
      dims = [_taps(n, k, s, tuple(p)) for n, k, s, p in
              zip(x.shape[1:4], mdl.kernel_size, mdl.strides, mdl.padding)]
      scale = x.shape[0] * x.shape[-1] * mdl.features * 2
      every.append(scale * np.prod([d[0] for d in dims]))
      inside.append(scale * np.prod([d[1] for d in dims]))
    return next_fun(*args, **kwargs)

  model = smt_model.build_model(config.model)
  with nn.intercept_methods(record):
    model_helpers.abstract_variables(model, model_helpers.clip_shape(config))
  assert len(every) == 1 + 16 * 3 + 4          # conv1, 3 per block, 4 shortcuts
  assert sum(every) / 1e9 == pytest.approx(302.556, abs=0.001)
  conv = sum(inside) / 1e9
  assert conv <= row["gflops"] <= conv * 1.02
  assert row["params"] / 1e6 == pytest.approx(27.22 + 0.357, abs=0.005)


def test_table_lists_every_part():
  rows = [model_report.report(configs_common.get_config(
      os.path.join(CONFIG_DIR, f"{n}.py:tiny")), n)
          for n in ("smt_i3d", "smt_i3d_rstg_res3_res4")]
  table = model_report.format_table(rows).splitlines()
  assert table[0].split(" | ")[1:4] == ["backbone M", "graph_res3 M", "graph_res4 M"]
  assert len(table) == 4 and table[2].startswith("| smt_i3d |")
  assert rows[1]["params_by_part"]["graph_res3"] > 0
  assert all(r["gflops"] > 0 for r in rows)
