"""The SyncMNIST classifiers: heads, combinations, parameter counts."""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_configs import syncmnist_common
from rstg_jax.models.classifiers import syncmnist_model

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def config(model, arg="tiny"):
  module = syncmnist_common
  return module.make_config(model, arg)


def _num_params(model, frames=10):
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, frames, 64, 64, 1),
                                                        jnp.uint8), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def test_paper_configs_build_with_the_expected_backbone():
  """Full-size models, shapes only (jax.eval_shape: no memory, no compile)."""
  backbone = 3 * 3 * 1 * 512 + 512 + 2 * (3 * 3 * 512 * 512 + 512)   # spec §8.1
  head = 512 * 46 + 46
  assert _num_params(syncmnist_model.build_model(config("mean", "").model)) == (
      backbone + 2 * 512 + head)                      # + BatchNorm scale/bias
  lstm = 4 * (512 * 512 + 512 * 512 + 512)
  assert _num_params(syncmnist_model.build_model(config("lstm", "").model)) == (
      backbone + 2 * 512 + lstm + head)
  rstg = _num_params(syncmnist_model.build_model(config("rstg", "").model))
  assert rstg > backbone + head + 2 * lstm            # two LSTMs and the MLPs


def test_plus_combination_starts_as_the_mean_baseline():
  video = np.random.RandomState(0).randint(0, 256, (4, 3, 64, 64, 1)).astype(np.uint8)
  c = config("rstg")
  c.model.backbone.width = c.model.graph.node_feat_dim = c.model.graph.message_dims = 8
  c.model.graph.num_process_iter = 1
  c.model.combine, c.model.residual_norm = "plus", "LN"
  plus = syncmnist_model.build_model(c.model)
  m = config("mean")
  m.model.backbone.width = 8
  mean = syncmnist_model.build_model(m.model)
  variables = jax.jit(lambda: plus.init(jax.random.PRNGKey(0), video, train=False))()
  shared = {k: variables["params"][k] for k in ("backbone", "baseline_bn", "pred")}
  logits_plus = jax.jit(lambda v: plus.apply(v, video, train=False))(variables)
  logits_mean = jax.jit(lambda v: mean.apply(v, video, train=False))(
      {"params": shared, "batch_stats": {"baseline_bn": variables["batch_stats"]
                                         ["baseline_bn"]}})
  assert logits_plus.shape == (4, 46)
  np.testing.assert_array_equal(logits_plus, logits_mean)


def test_bad_model_settings_fail_clearly():
  c = config("mean")
  c.model.head = "transformer"
  with pytest.raises(ValueError, match=r"config.model.head='transformer' is not one of"):
    syncmnist_model.build_model(c.model)
  c = config("rstg")
  c.model.graph.use_att = "cosine"
  with pytest.raises(ValueError, match=r"GraphConfig.use_att='cosine'"):
    syncmnist_model.build_model(c.model)
