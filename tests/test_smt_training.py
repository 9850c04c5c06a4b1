"""Something-Something end to end on tiny fake trees: every config builds and trains
through `rstg_jax.main`, exact resume, dense multi-view evaluation (1 and 2
processes) against a NumPy reference, `init_from` fine-tuning, and clear errors."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from rstg_configs import common as configs_common
from rstg_datasets.smt_common import fake_tree as ft
from rstg_datasets.something_something_v1 import SomethingSomethingV1
from rstg_datasets.something_something_v2 import SomethingSomethingV2
from rstg_jax import checkpointing
from rstg_jax import parallel
from rstg_jax import tasks as tasks_lib
from rstg_jax.data import smt_input
from rstg_jax.models import smt_model
from rstg_jax.train import init_from as init_from_lib
from rstg_jax.train import loop
from rstg_jax.train.train_state import TrainState

_REPO = pathlib.Path(__file__).resolve().parents[1]
NAMES = ft.fake_class_names()
SMT_CONFIGS = [os.path.basename(p)[:-3] for p in configs_common.experiment_files()
               if configs_common.get_config(p).task == "something_something"]


def _videos(prefix: str, n: int, first_class: int, frames: int = 6):
  return [ft.FakeVideo(f"{prefix}{k}", NAMES[(first_class + 7 * k) % 174], frames + k % 3,
                       60, 80) for k in range(n)]


def _build(root: pathlib.Path, builder_cls, writer) -> pathlib.Path:
  manual = root / "manual"
  writer(str(manual), {"train": _videos("1", 8, 0), "validation": _videos("2", 5, 3),
                       "test": [ft.FakeVideo("901", None, 5, 60, 80)]})
  ft.prepare(builder_cls, str(manual), str(root / "data"))
  return root / "data"


@pytest.fixture(scope="module")
def v1_data(tmp_path_factory):
  return _build(tmp_path_factory.mktemp("smt_v1"), SomethingSomethingV1, ft.write_v1_tree)


def tiny(name: str, data_dir, **overrides):
  """configs/<name>.py:tiny on the fake tree, 2 steps of batch 8 (8 devices)."""
  c = configs_common.get_config(f"{name}:tiny")
  c.data.data_dir = str(data_dir)
  c.batch_size = c.eval_batch_size = 8
  c.num_train_steps = 2
  c.eval_every_steps = 0
  c.checkpoint.every_steps = 1
  c.log_every_steps = 1
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def test_every_config_builds_at_full_size():
  mesh = parallel.make_mesh()
  for path in configs_common.experiment_files():
    config = configs_common.get_config(path)
    task = tasks_lib.get_task(config, mesh)
    model = task.build_model()
    d = config.data
    shape = ((1, d.num_frames, d.image_size, d.image_size, 3)
             if config.task == "something_something" else (1, 10, 64, 64, 1))
    clip = jax.ShapeDtypeStruct(shape, np.uint8)
    variables = jax.eval_shape(lambda x, m=model: m.init(jax.random.key(0), x,
                                                         train=False), clip)
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    assert n > 1e6, path   # every full-size model has millions of parameters
    logits = jax.eval_shape(lambda v, x, m=model: m.apply(v, x, train=False),
                            variables, clip)
    assert logits.shape == (1, config.model.num_classes), path


def _run_main(args):
  """`python -m rstg_jax.main ARGS` in a fresh process (absl flags parse once)."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
  proc = subprocess.run([sys.executable, "-m", "rstg_jax.main", *args], cwd=_REPO,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout


def _main_flags(config_name: str, data_dir, workdir, name="v1", steps=2):
  return [f"--config=configs/{config_name}.py:tiny", f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}", f"--config.data.name={name}",
          "--config.batch_size=8", "--config.eval_batch_size=8",
          f"--config.num_train_steps={steps}", "--config.eval_every_steps=0"]


# One config in the default run; all of them with `-m slow` (a minute each on CPU).
@pytest.mark.parametrize("config_name", [
    c if c == "smt_i3d_rstg_final" else pytest.param(c, marks=pytest.mark.slow)
    for c in SMT_CONFIGS])
def test_tiny_config_trains_and_evaluates_through_main(config_name, v1_data, tmp_path):
  workdir = tmp_path / "run"
  out = _run_main(_main_flags(config_name, v1_data, workdir))
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["task"] == "something_something" and summary["steps"] == 2
  assert summary["validation_num_examples"] == 5
  assert summary["validation_1x1_num_videos"] == 5
  assert 0 <= summary["validation_1x1_top1"] <= summary["validation_1x1_top5"] <= 1
  res5_channels = 32 * summary["config"]["model"]["width"]
  assert summary["params_per_part"]["head"] == 174 * (res5_channels + 1)
  assert (summary["params_per_part"]["graph"] > 0) == ("rstg" in config_name)
  for suffix in ("metrics.json", "per_class.json", "confusion.json", "confusion.png",
                 "predictions.txt", "video_logits.npz"):
    assert (workdir / f"validation_1x1_{suffix}").is_file(), suffix
  assert len((workdir / "validation_1x1_predictions.txt").read_text().splitlines()) == 5
  assert "validation top-1" in out and "1x1 views: top-1" in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg for webm")
def test_v2_trains_and_evaluates_through_main(tmp_path_factory, tmp_path):
  data = _build(tmp_path_factory.mktemp("smt_v2"), SomethingSomethingV2, ft.write_v2_tree)
  workdir = tmp_path / "run"
  _run_main(_main_flags("smt_c2d", data, workdir, name="v2"))
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["steps"] == 2 and summary["validation_1x1_num_videos"] == 5
  assert summary["config"]["data"]["name"] == "v2"


class _RecordingTask(tasks_lib.get_task_class("something_something")):
  """Keeps the training input, whose sources record what they read."""

  def train_input(self):
    self.source(self.config.data.train_split).record_reads = True
    self.made_input = super().train_input()
    return self.made_input


def _arrays(workdir, step):
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    return ckpt.restore_arrays(step)
  finally:
    ckpt.close()


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(v1_data, tmp_path):
  # C2D, the cheapest model: resume is the loop's and the input's business.
  config = tiny("smt_c2d", v1_data, num_train_steps=4, eval_every_steps=2)
  config.data.eval_views = "1x1"   # 8 train videos: one epoch per step
  mesh = parallel.make_mesh()
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))
  stopped = loop.train_and_evaluate(config, str(tmp_path / "resumed"), stop_at_step=2)
  assert stopped == {"stopped_at_step": 2}
  task = _RecordingTask(config, mesh)
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"), task=task)
  for key in ("validation_top1", "validation_loss", "eval_history", "validation_1x1_top1"):
    assert full[key] == resumed[key], key
  jax.tree.map(np.testing.assert_array_equal, _arrays(tmp_path / "full", 4),
               _arrays(tmp_path / "resumed", 4))
  # The resumed input read rows of steps 2 and 3 only (8 rows a step), never
  # the 16 rows of the steps already done.
  (slice_input,) = task.made_input._inputs  # pylint: disable=protected-access
  assert min(slice_input.positions_read) == 16
  assert set(range(16, 32)) <= set(slice_input.positions_read)


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
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_", "SLURM_", "OMPI_", "XLA_"))}
  env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
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


@pytest.mark.parametrize("overrides, error, message", [
    ({"task": "kinetics"}, tasks_lib.UnknownTaskError,
     r"config.task='kinetics' is not a known task; known: \['something_something', "
     r"'sync_mnist'\]"),
    ({"data.train_split": "train2"}, smt_input.DataError,
     r"config.data.train_split='train2' is not in the build .* \(splits: \['test', "
     r"'train', 'validation'\]\)"),
    ({"init_from": "/nonexistent/run"}, init_from_lib.InitFromError,
     r"config.init_from='/nonexistent/run': no such file or folder"),
    ({"model.num_classes": 400}, smt_input.DataError,
     r"config.model.num_classes=400 but the build .* has 174 label names"),
    ({"mode": "eval"}, loop.ConfigError, r"config.mode='eval' needs config.init_from"),
    ({"num_train_steps": -5}, loop.ConfigError, r"config.num_train_steps=-5 must be a positive number"),
])
def test_bad_configs_fail_before_training(v1_data, tmp_path, overrides, error, message):
  config = tiny("smt_c2d", v1_data, **overrides)
  with pytest.raises(error, match=message):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_init_from_folder_without_checkpoint_is_named(v1_data, tmp_path):
  (tmp_path / "empty").mkdir()
  config = tiny("smt_c2d", v1_data, init_from=str(tmp_path / "empty"))
  with pytest.raises(init_from_lib.InitFromError, match=r"holds no checkpoint"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
