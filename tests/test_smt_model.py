"""The Something-Something configs and their classifiers (smt_model)."""
from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_configs import common as configs_common
from rstg_jax.models.classifiers import smt_model
from rstg_jax.models.graph.graph_block import RSTGBlock
from rstg_jax.tools import model_report
from rstg_jax.train import optimizers
from rstg_jax.train import steps
from rstg_jax.train.train_state import TrainState
import model_helpers

CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "configs")
CONFIGS = ("smt_c2d", "smt_c2d_rstg_final", "smt_i3d", "smt_i3d_rstg_final",
           "smt_i3d_rstg_res3_res4", "smt_nonlocal", "smt_c2d_from_kinetics",
           "smt_i3d_from_kinetics")
RSTG_CONFIGS = ("smt_c2d_rstg_final", "smt_i3d_rstg_final", "smt_i3d_rstg_res3_res4")
# These tests are compile-bound on CPU: skip XLA's backend optimisations (~30% faster).
fast_jit = functools.partial(
    jax.jit, compiler_options={"xla_backend_optimization_level": 0})
# Expected parameters (millions) from the spec, not from this code: backbones §8.2-§8.4
# (NL: I3D + 7.36), graphs §11.8 (final 9.98 + 4096 residual-LN, res3 7.88 + 1024,
# res4 8.93 + 2048), head 2048 * 174 + 174.
I3D, C2D, NL = 27.22, 23.51, 27.22 + 7.36
HEAD = (2048 * 174 + 174) / 1e6
EXPECTED = {
    "smt_c2d": {"backbone": C2D},
    "smt_c2d_rstg_final": {"backbone": C2D, "graph_final": 9.98 + 0.004096},
    "smt_i3d": {"backbone": I3D},
    "smt_i3d_rstg_final": {"backbone": I3D, "graph_final": 9.98 + 0.004096},
    "smt_i3d_rstg_res3_res4": {"backbone": I3D, "graph_res3": 7.88 + 0.001024,
                               "graph_res4": 8.93 + 0.002048},
    "smt_nonlocal": {"backbone": NL},
    "smt_c2d_from_kinetics": {"backbone": C2D},
    "smt_i3d_from_kinetics": {"backbone": I3D},
}


def load(name: str, arg: str = ""):
  path = os.path.join(CONFIG_DIR, f"{name}.py")
  return configs_common.get_config(path + (f":{arg}" if arg else ""))


@pytest.mark.parametrize("name", CONFIGS)
def test_full_size_config_builds_and_counts_match_spec(name):
  config = load(name)
  model = smt_model.build_model(config.model)
  variables = model_helpers.abstract_variables(model, model_helpers.clip_shape(config))
  parts = model_report.param_breakdown(variables["params"])
  want = dict(EXPECTED[name], head=HEAD)
  assert set(parts) == set(want) | {"total"}
  for part, millions in want.items():
    assert parts[part] / 1e6 == pytest.approx(millions, abs=0.006), part
  assert model_helpers.count(variables["params"]) == parts["total"]


def _video(config, batch=2, seed=1):
  shape = model_helpers.clip_shape(config, batch)
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


_RUNS = {}


def _tiny_run(name: str, *, train_step: bool = True, **overrides):
  """Init (with an eval forward) and optionally one trainer step of a tiny config.

  `overrides` set config fields, '__' separating levels (model__dtype='bfloat16').
  Runs are cached by the resulting config, so configs that are the same experiment
  (smt_*_from_kinetics and smt_*) share one.
  """
  config = load(name, "tiny")
  for path, value in overrides.items():
    node = config
    *parents, leaf = path.split("__")
    for p in parents:
      node = node[p]
    node[leaf] = value
  key = json.dumps(config.to_dict(), sort_keys=True, default=str)
  if key not in _RUNS:
    model = smt_model.build_model(config.model)
    video = _video(config)
    # A fast-compiling PRNG for init (XLA's CPU compile of threefry is slow).
    init_key = jax.random.key(0, impl="rbg")
    capture = lambda mdl, _: isinstance(mdl, RSTGBlock)
    logits, variables = fast_jit(lambda x: model.init_with_output(
        init_key, x, train=False, capture_intermediates=capture,
        mutable=["params", "batch_stats", "intermediates"]))(video)
    variables = dict(variables)
    _RUNS[key] = dict(config=config, model=model, video=video, logits=logits,
                      branches=variables.pop("intermediates", {}), variables=variables)
  run = _RUNS[key]
  if train_step and "new_state" not in run:
    config, model, video, variables = (run["config"], run["model"], run["video"],
                                       run["variables"])
    tx = optimizers.make_optimizer(config.optimizer, config.optimizer.learning_rate)
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                              batch_stats=variables.get("batch_stats", {}))
    step = fast_jit(steps.make_train_step(
        base_rng=jax.random.key(config.seed), loss_reduction=config.loss_reduction))
    batch = {"video": video, "label": jnp.array([3, 170], jnp.int32)}
    new_state, metrics = step(state, batch)
    run.update(state=state, new_state=new_state, metrics=metrics.compute(), batch=batch)
  return run


def tiny_run(name: str):
  return _tiny_run(name)


def test_from_kinetics_configs_are_the_backbone_only_models():
  """The configs of the released Kinetics checkpoints build exactly the backbone-only C2D/I3D models
  (so their tiny runs below are shared with smt_c2d / smt_i3d)."""
  for arg in ("", "tiny"):
    for kin, smt in (("smt_c2d_from_kinetics", "smt_c2d"), ("smt_i3d_from_kinetics", "smt_i3d")):
      assert load(kin, arg).to_dict() == load(smt, arg).to_dict()


@pytest.mark.parametrize("name", CONFIGS)
def test_tiny_config_forward_and_training_step(name):
  run = tiny_run(name)
  config, logits = run["config"], run["logits"]
  assert logits.shape == (2, config.model.num_classes) and logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  m = run["metrics"]
  assert np.isfinite(m["loss"]) and m["grad_norm"] > 0
  old, new = run["state"], run["new_state"]
  assert int(new.step) == 1
  changed = jax.tree_util.tree_map(lambda a, b: bool((a != b).any()), old.params,
                                   new.params)
  # Every trainable part moves (BN scale/bias included, as in the original).
  assert changed["pred"]["kernel"] and changed["backbone"]["res_conv1_bn"]["scale"]
  assert changed["backbone"]["res5_0"]["branch2c"]["kernel"]
  # Frozen backbone BatchNorm: running statistics untouched by the training step.
  jax.tree_util.tree_map(np.testing.assert_array_equal, new.batch_stats,
                         old.batch_stats)


def _residual_scales(params):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat
          if "after_graph_ln_scale" in jax.tree_util.keystr(p)}


@pytest.mark.parametrize("name", RSTG_CONFIGS)
def test_rstg_model_starts_as_its_backbone(name):
  run = tiny_run(name)
  # Every graph branch is exactly zero at initialisation ...
  # (The captured block outputs; the graph also sows its attention and node states.)
  branches = [v for p, v in jax.tree_util.tree_flatten_with_path(run["branches"])[0]
              if "__call__" in jax.tree_util.keystr(p)]
  assert len(branches) == (2 if "res3_res4" in name else 1)
  for b in branches:
    assert np.asarray(b).size and not np.asarray(b).any()
  # ... so the logits are those of the same config without graphs, given the same
  # backbone and head parameters (up to float rounding between two compiled programs,
  # which fuse reductions differently: ~1e-7 relative).
  config = load(name, "tiny")
  config.model.place_graph = "none"
  backbone_model = smt_model.build_model(config.model)
  params = dict(run["variables"]["params"])
  params.pop("graph_final", None)
  params["backbone"] = {k: v for k, v in params["backbone"].items()
                        if not k.startswith("graph_")}
  variables = {**run["variables"], "params": params}
  want = fast_jit(lambda v, x: backbone_model.apply(v, x, train=False))(
      variables, run["video"])
  np.testing.assert_allclose(run["logits"], want, rtol=0, atol=1e-5)
  # One training step moves the zero-initialised residual scales off zero.
  before = _residual_scales(run["state"].params)
  after = _residual_scales(run["new_state"].params)
  assert len(after) == len(branches)
  for k in after:
    assert not before[k].any() and np.abs(after[k]).max() > 0, k


def test_remat_gives_the_same_training_step():
  """Rematerialising every backbone stage and the graph scan changes memory, not
  values: from the same state, one step gives the plain model's parameters to float
  rounding."""
  plain = tiny_run("smt_i3d_rstg_final")
  config = load("smt_i3d_rstg_final", "tiny")
  config.model.remat_stages = "all"
  config.model.graph.remat = True
  model = smt_model.build_model(config.model)
  step = fast_jit(steps.make_train_step(
      base_rng=jax.random.key(config.seed), loss_reduction=config.loss_reduction))
  new_state, _ = step(plain["state"].replace(apply_fn=model.apply), plain["batch"])
  jax.tree_util.tree_map(
      functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
      new_state.params, plain["new_state"].params)


def test_bfloat16_compute_agrees_with_float32():
  """bf16 activations with float32 params: logits within 2.5% of the largest float32
  logit, with every graph switched on (residual scales 1) so that they count."""
  config = load("smt_i3d_rstg_res3_res4", "tiny")
  config.model.place_graph = "res3-res4-final"
  f32 = smt_model.build_model(config.model)
  config.model.dtype = "bfloat16"
  bf16 = smt_model.build_model(config.model)
  video = _video(config, seed=3)
  # Parameters of the tiny res3-res4 and final graphs models (same widths), combined.
  variables = dict(tiny_run("smt_i3d_rstg_res3_res4")["variables"])
  variables["params"] = {**variables["params"], "graph_final": tiny_run(
      "smt_i3d_rstg_final")["variables"]["params"]["graph_final"]}
  graphs_on = {**variables, "params": jax.tree_util.tree_map_with_path(
      lambda p, v: (jnp.ones_like(v) if "after_graph_ln_scale" in jax.tree_util.keystr(p)
                    else v), variables["params"])}
  forward = lambda m: fast_jit(lambda v, x: m.apply(v, x, train=False))
  f32_forward = forward(f32)
  want = f32_forward(graphs_on, video)
  backbone_only = f32_forward(variables, video)
  got = forward(bf16)(graphs_on, video)
  assert got.dtype == jnp.float32
  # The graphs change the logits far more than the tolerance below.
  assert np.abs(want - backbone_only).max() > 0.5
  # Measured: 1.1% of the largest logit.
  assert np.abs(got - want).max() <= 0.025 * np.abs(want).max()


def test_uint8_video_is_normalised_in_the_model():
  config = load("smt_c2d", "tiny")
  model = smt_model.build_model(config.model)
  raw = jax.random.randint(jax.random.key(4), model_helpers.clip_shape(config, 2), 0,
                           256).astype(jnp.uint8)
  variables = tiny_run("smt_c2d")["variables"]
  normalised = (raw.astype(jnp.float32) - 114.75) / 57.375
  forward = fast_jit(lambda v, x: model.apply(v, x, train=False))
  np.testing.assert_allclose(forward(variables, raw), forward(variables, normalised),
                             rtol=1e-5, atol=1e-5)


def test_bad_places_are_named():
  config = load("smt_i3d", "tiny")
  config.model.place_graph = "res3-pool5"
  with pytest.raises(ValueError, match=r"place_graph.*pool5"):
    smt_model.build_model(config.model)
