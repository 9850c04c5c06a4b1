"""Something-Something evaluation end to end on a tiny fake tree: dense multi-view
evaluation (1 and 2 processes) against a NumPy reference, `init_from` fine-tuning,
evaluating a checkpoint of another model."""
from __future__ import annotations

import json
import subprocess

import jax
import numpy as np
import pytest

from rstg_configs import common as configs_common
from rstg_jax.data import smt_input
from rstg_jax.models.classifiers import smt_model
from rstg_jax.runtime import checkpointing
from rstg_jax.train import loop
from rstg_jax.train.train_state import TrainState
import subprocess_env
from smt_tree import _REPO, arrays as _arrays, build_v1, tiny


@pytest.fixture(scope="module")
def v1_data(tmp_path_factory):
  return build_v1(tmp_path_factory)


def _reference_video_logits(config, params, batch_stats, data_dir, views: str):
  """Per-video mean of per-clip logits, one video and one clip at a time."""
  builder = smt_input.load_builder(config.data)
  source = smt_input.ExampleSource(builder, "validation")
  spec = smt_input.view_spec_from_config(config.data, views)
  model = smt_model.build_model(config.model)
  apply = jax.jit(lambda x: model.apply({"params": params, "batch_stats": batch_stats},
                                        x, train=False))
  out = {}
  for i in range(len(source)):
    example = source[i]
    clips = smt_input._view_clips_fn(spec, config.data.num_frames)(  # pylint: disable=protected-access
        *smt_input._example_args(example)).numpy()  # pylint: disable=protected-access
    per_clip = [np.asarray(apply(clip[None]), np.float64)[0] for clip in clips]
    out[example["video_id"]] = np.mean(per_clip, axis=0)
  return out


def _check_against_reference(npz_path, reference):
  got = np.load(npz_path)
  assert sorted(got["video_id"].tolist()) == sorted(reference)   # every video once
  for vid, logits in zip(got["video_id"], got["logits"]):
    np.testing.assert_allclose(logits, reference[str(vid)], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def trained(v1_data, tmp_path_factory):
  """A tiny trained I3D + RSTG workdir (source of evaluations and fine-tuning)."""
  workdir = tmp_path_factory.mktemp("trained")
  config = tiny("smt_i3d_rstg_final", v1_data)
  loop.train_and_evaluate(config, str(workdir))
  return config, workdir


def test_dense_evaluation_counts_every_video_once_and_equals_a_numpy_reference(
    trained, v1_data, tmp_path):
  config, workdir = trained
  config = tiny("smt_i3d_rstg_final", v1_data, mode="eval", init_from=str(workdir))
  config.data.eval_views = "3x2"     # 6 views a video, batches of 8 clips
  summary = loop.train_and_evaluate(config, str(tmp_path / "eval"))
  assert summary["mode"] == "eval" and summary["validation_3x2_num_videos"] == 5
  arrays = _arrays(workdir, 2)
  reference = _reference_video_logits(config, arrays["params"], arrays["batch_stats"],
                                      v1_data, "3x2")
  _check_against_reference(tmp_path / "eval" / "validation_3x2_video_logits.npz", reference)
  assert not (tmp_path / "eval" / "checkpoints").exists()   # evaluation writes none


@pytest.mark.slow   # two processes each compile the model: minutes on 2 cores
def test_dense_evaluation_on_two_processes_equals_the_reference(trained, v1_data, tmp_path):
  config, workdir = trained
  out = tmp_path / "eval2"
  env = subprocess_env.without(("JAX_", "SLURM_", "OMPI_", "XLA_"),
                               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  cmd = ["bash", str(_REPO / "experiments/launch/local_cpu.sh"), "-n", "2", "-k", "2",
         "-t", "240", "--", "--config=configs/smt_i3d_rstg_final.py:tiny",
         f"--workdir={out}", f"--config.data.data_dir={v1_data}", "--config.mode=eval",
         f"--config.init_from={workdir}", "--config.data.eval_views=3x2",
         "--config.eval_batch_size=4"]   # 2 clips per process and batch: 6 views spill
  proc = subprocess.run(cmd, cwd=_REPO, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  arrays = _arrays(workdir, 2)
  reference = _reference_video_logits(config, arrays["params"], arrays["batch_stats"],
                                      v1_data, "3x2")
  _check_against_reference(out / "validation_3x2_video_logits.npz", reference)
  summary = json.loads((out / "summary.json").read_text())
  assert summary["validation_3x2_num_videos"] == 5 and summary["validation_num_examples"] == 5


def test_init_from_loads_the_backbone_keeps_the_graph_and_renews_the_head(
    v1_data, tmp_path):
  # A "Kinetics" backbone-only source with 400 classes.
  source_config = configs_common.get_config("smt_i3d:tiny")
  source_config.model.num_classes = 400
  source_model = smt_model.build_model(source_config.model)
  video = np.random.default_rng(0).integers(0, 256, (2, 8, 64, 64, 3)).astype(np.uint8)
  source_vars = jax.jit(lambda x: source_model.init(jax.random.key(7), x,
                                                    train=False))(video)
  import optax  # pylint: disable=g-import-not-at-top
  state = TrainState.create(apply_fn=source_model.apply, params=source_vars["params"],
                            tx=optax.sgd(0.1), batch_stats=source_vars["batch_stats"])
  ckpt = checkpointing.Checkpointer(str(tmp_path / "kinetics" / "checkpoints"),
                                    async_save=False)
  ckpt.save(state, {"note": "test source"})
  ckpt.close()

  config = tiny("smt_i3d_rstg_final", v1_data, init_from=str(tmp_path / "kinetics"))
  run = loop.set_up(config, str(tmp_path / "finetune"))
  try:
    params = jax.device_get(run.state.params)
    stats = jax.device_get(run.state.batch_stats)
    report = "\n".join(run.init_report)
  finally:
    run.close()
  jax.tree.map(np.testing.assert_array_equal, params["backbone"],
               source_vars["params"]["backbone"])
  jax.tree.map(np.testing.assert_array_equal, stats["backbone"],
               source_vars["batch_stats"]["backbone"])
  assert params["pred"]["kernel"].shape == (32 * config.model.width, 174)   # a new head
  assert "re-initialised (other class count) 2: " in report
  assert "params/pred/bias (400,) -> (174,)" in report
  assert "initialised (not in the source)" in report and "params/graph_final" in report
  # At initialisation the graph branch is zero: the logits are the backbone's.
  backbone_only = smt_model.build_model(configs_common.get_config("smt_i3d:tiny").model)
  want = jax.jit(lambda v: backbone_only.apply(v, video, train=False))(
      {"params": {"backbone": params["backbone"], "pred": params["pred"]},
       "batch_stats": stats})
  rstg = smt_model.build_model(config.model)
  got = jax.jit(lambda v: rstg.apply(v, video, train=False))(
      {"params": params, "batch_stats": stats})
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_evaluating_a_checkpoint_of_another_model_names_the_parameter(trained, v1_data,
                                                                      tmp_path):
  _, workdir = trained
  config = tiny("smt_i3d", v1_data, mode="eval", init_from=str(workdir / "checkpoints" / "2"))
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"is not a checkpoint of this model: the checkpoint has "
                           r"parameter 'params/graph_final/"):
    loop.train_and_evaluate(config, str(tmp_path / "eval"))


