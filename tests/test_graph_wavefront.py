"""The fused scan's skewed whole-clip schedule (GraphConfig.wavefront).

Step s runs iteration k on frame s - k for all k at once; the first and last K - 1
steps run outside the scan with only their busy iterations. Outputs and gradients must
equal the step-by-step scan's (itself checked against the NumPy reference in
test_graph_scan.py) up to float rounding: compared in float64, where a wrong step, a
state read from the wrong iteration or a lost edge frame shows far above 1e-10.
"""
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.graph.rstg_graph import RSTGGraph
from test_graph_rewrite import assert_equal_in_float64, cfg_of, params_and_nodes


# (K, T, settings): T < K (no scan: every step is an edge), K > 3 (iterations without
# the time stage inside the busy range), remat (T > K); with -m slow also T > K without
# remat, T = K, T = 1, K = 1, every iteration timed, the ablations and the residual
# update. test_graph_scan.py checks the default fused scan against the NumPy reference.
SLOW = pytest.mark.slow
CASES = [
    (3, 2, dict()),
    (4, 6, dict()),
    (3, 5, dict(remat=True)),
    pytest.param(3, 3, dict(use_att="simple", use_positional_emb=True,
                            adjacency="masked"), marks=SLOW),
    pytest.param(3, 5, dict(), marks=SLOW),
    pytest.param(2, 1, dict(), marks=SLOW),
    pytest.param(1, 4, dict(), marks=SLOW),
    pytest.param(5, 6, dict(time_iters="all"), marks=SLOW),
    pytest.param(3, 5, dict(stages="time"), marks=SLOW),
    pytest.param(3, 5, dict(stages="space"), marks=SLOW),
    pytest.param(3, 4, dict(use_att="none", use_norm="none", space_residual=True,
                            norm_scope="per_frame"), marks=SLOW),
]


@pytest.mark.parametrize("k,frames,case", CASES,
                         ids=lambda c: str(c) if not isinstance(c, dict) else
                         "-".join(f"{v}" for v in c.values()) or "default")
def test_wavefront_equals_step_by_step_scan_in_float64(k, frames, case):
  skewed = cfg_of(scan="fused", num_process_iter=k, wavefront=True, **case)
  stepwise = dataclasses.replace(skewed, wavefront=False, remat=False)
  params, nodes = params_and_nodes(skewed, seed=k + frames, frames=frames)
  assert_equal_in_float64(skewed, stepwise, params, nodes)


def test_float32_wavefront_outputs_every_frame_once():
  cfg = cfg_of(scan="fused")
  params, nodes = params_and_nodes(cfg, seed=3, frames=7)
  skewed = jax.jit(RSTGGraph(cfg).apply)({"params": params}, nodes)
  stepwise = jax.jit(RSTGGraph(dataclasses.replace(cfg, wavefront=False)).apply)(
      {"params": params}, nodes)
  assert skewed.shape == nodes.shape
  np.testing.assert_allclose(skewed, stepwise, atol=1e-5, rtol=1e-5)


def _scan_lengths(cfg, frames):
  nodes = jnp.zeros((2, frames, 14, cfg.node_feat_dim))
  variables = RSTGGraph(cfg).init(jax.random.key(0), nodes)
  text = str(jax.make_jaxpr(lambda v: RSTGGraph(cfg).apply(v, nodes))(variables))
  return sorted(int(n) for n in re.findall(r"length=(\d+)", text))


def test_schedule_is_skewed_only_where_it_applies():
  # T = 6, K = 3: steps 2..5 have every iteration busy, the 4 others run outside.
  assert _scan_lengths(cfg_of(scan="fused"), 6) == [4]
  assert _scan_lengths(cfg_of(scan="fused", wavefront=False), 6) == [6]
  # Message BatchNorm pools statistics over a call's frames: step by step.
  assert _scan_lengths(cfg_of(scan="fused", use_norm="BN"), 6) == [6]
