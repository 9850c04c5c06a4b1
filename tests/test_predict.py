"""`python -m rstg_jax.predict`: videos on disk -> the evaluation's logits; streaming.

The reference is always computed another way than the code under test: the
evaluation input over the BUILT data set (`smt_input.EvalInput`) and the evaluation's
predict step for `predict`, the whole-clip `model.apply` for streaming.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from rstg_configs import common as configs_common
from rstg_jax import checkpointing
from rstg_jax import parallel
from rstg_jax import predict
from rstg_jax import streaming
from rstg_jax.data import predict_input
from rstg_jax.data import smt_input
from rstg_jax.models import smt_model
from rstg_jax.models import syncmnist_model
from rstg_jax.train import loop
from rstg_jax.train import steps
from rstg_jax.train.train_state import TrainState
from smt_tree import _REPO, NAMES, build_v1, tiny

CAUSAL = "smt_c2d_rstg_final_causal"


def _save_random_model(config, model, shape, workdir) -> dict:
  """A 'trained' checkpoint: initialised, then every parameter perturbed (so the
  zero-initialised graph branch counts), saved with the run's meta."""
  video = np.zeros(shape, np.uint8)
  variables = jax.jit(lambda x: model.init(jax.random.key(3), x, train=False))(video)
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda a: np.asarray(a) + 0.2 * rng.standard_normal(a.shape).astype(a.dtype),
      variables["params"])
  state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1),
                            batch_stats=variables.get("batch_stats", {}))
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"), async_save=False)
  ckpt.save(state, {"config": loop.config_to_dict(config), "step": 0})
  ckpt.close()
  return {"params": params, "batch_stats": variables.get("batch_stats", {})}


@pytest.fixture(scope="module")
def v1_data(tmp_path_factory):
  return build_v1(tmp_path_factory)


@pytest.fixture(scope="module")
def smt_run(v1_data, tmp_path_factory):
  config = tiny(CAUSAL, v1_data)
  workdir = tmp_path_factory.mktemp("c2d_causal")
  model = smt_model.build_model(config.model)
  variables = _save_random_model(config, model, (1, 8, 64, 64, 3), workdir)
  return config, workdir, variables


def _frames_root(v1_data):
  return v1_data.parent / "manual" / "20bn-something-something-v1"


def _evaluation_logits(config, variables, views):
  """{video id: view-averaged logits} from the evaluation input and predict step."""
  builder = smt_input.load_builder(config.data)
  ev = smt_input.EvalInput(smt_input.ExampleSource(builder, "validation"), batch_size=8,
                           views=smt_input.view_spec_from_config(config.data, views),
                           num_frames=config.data.num_frames, num_workers=1)
  model = smt_model.build_model(config.model)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                            tx=optax.sgd(0.1), batch_stats=variables["batch_stats"])
  mesh = parallel.make_mesh()
  step = parallel.jit_eval_step(steps.predict_step, mesh)
  rows = {}
  for batch in ev:
    out = jax.device_get(step(state, parallel.host_to_global(batch, mesh)))
    for vid, logits, mask in zip(smt_input.decode_video_ids(out["video_id"]),
                                 out["logits"], out["mask"]):
      if mask:
        rows.setdefault(vid, []).append(np.asarray(logits, np.float64))
  return {vid: np.mean(v, axis=0) for vid, v in rows.items()}


def test_predict_on_frame_folders_equals_the_evaluation_with_3x2_views(smt_run, v1_data):
  config, workdir, variables = smt_run
  root = _frames_root(v1_data)
  validation = [f"2{k}" for k in range(5)]
  inputs = root.parent / "validation_only"
  inputs.mkdir()
  for vid in validation:
    os.symlink(root / vid, inputs / vid)
  logs = []
  doc = predict.predict(config, str(workdir), str(inputs), views="3x2", batch_size=8,
                        log=logs.append)
  reference = _evaluation_logits(config, variables, "3x2")
  got = {os.path.basename(v["input"]): v for v in doc["videos"]}
  assert sorted(got) == validation and not doc["skipped"]
  for vid in validation:
    np.testing.assert_allclose(got[vid]["logits"], reference[vid], rtol=1e-4, atol=1e-4)
    top = got[vid]["top"]
    assert [t["class"] for t in top] == list(np.argsort(-reference[vid])[:5])
    assert [t["name"] for t in top] == [NAMES[t["class"]] for t in top]
  assert "labels of" in doc["class_names_from"]   # the data set's label file
  # 6 frames < the 8 sampled: said, and how the sampling pads.
  assert any("20: 6 frames, fewer than the 8 sampled: frames repeat" in n
             for n in got["20"]["notes"])
