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
from rstg_datasets.sync_mnist import pair_labels
from rstg_jax import inference
from rstg_jax import predict
from rstg_jax import streaming
from rstg_jax.data import predict_input
from rstg_jax.data import smt_input
from rstg_jax.models.classifiers import smt_model
from rstg_jax.models.classifiers import syncmnist_model
from rstg_jax.runtime import checkpointing
from rstg_jax.runtime import parallel
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


def _run_predict(*args: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
  env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "rstg_jax.predict", *args], cwd=_REPO,
                        env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def reference_1x1(smt_run):
  config, _, variables = smt_run
  return _evaluation_logits(config, variables, "1x1")


def test_cli_folder_with_corrupt_videos_lists_them_and_writes_the_others(
    smt_run, v1_data, reference_1x1, tmp_path):
  _, workdir, _ = smt_run
  root = _frames_root(v1_data)
  folder = tmp_path / "videos"
  folder.mkdir()
  for vid in ("21", "22"):
    shutil.copytree(root / vid, folder / vid)
  (folder / "bad.webm").write_bytes(os.urandom(2000))        # not a video
  (folder / "broken").mkdir()                                 # a frame that is no JPEG
  (folder / "broken" / "00001.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(100))
  out = tmp_path / "out" / "predictions.json"
  r = _run_predict(f"--config=configs/{CAUSAL}.py:tiny", f"--checkpoint={workdir}",
                   f"--input={folder}", f"--out={out}", "--batch_size=4",
                   f"--config.data.data_dir={v1_data}")
  assert r.returncode == 0, r.stderr[-3000:]
  doc = json.loads(out.read_text())
  got = {os.path.basename(v["input"]): v for v in doc["videos"]}
  assert sorted(got) == ["21", "22"]
  for vid in got:
    np.testing.assert_allclose(got[vid]["logits"], reference_1x1[vid], rtol=1e-4,
                               atol=1e-4)
    assert f"{got[vid]['top'][0]['probability']:.4f}  {got[vid]['top'][0]['name']}" in (
        r.stdout)
  skipped = {os.path.basename(s["input"]): s["error"] for s in doc["skipped"]}
  assert sorted(skipped) == ["bad.webm", "broken"]
  assert "bad.webm" in skipped["bad.webm"] and "00001.jpg" in skipped["broken"]
  assert "2 of 4 inputs skipped" in r.stderr and "[4/4]" in r.stderr


def test_cli_user_error_is_one_line(smt_run, v1_data):
  _, workdir, _ = smt_run
  r = _run_predict("--config=configs/smt_c2d_rstg_final.py:tiny", f"--checkpoint={workdir}",
                   f"--input={_frames_root(v1_data) / '21'}", "--stream")
  assert r.returncode == 1
  lines = [l for l in r.stderr.splitlines() if l.strip() and "oneDNN" not in l
           and "absl::InitializeLog" not in l]
  assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
  assert lines[0].startswith("ERROR: --stream: the pre-graph LayerNorm spans the whole "
                             "clip (norm_scope='clip'")


def test_a_mistyped_config_override_is_one_line_before_anything_loads(tmp_path):
  # The same check as rstg_jax.main's (config_check.parse_flags), before any input is read.
  r = _run_predict("--config=configs/syncmnist_rstg.py:tiny", f"--checkpoint={tmp_path}",
                   f"--input={tmp_path}", "--config.model.graph.norm_scpe=per_frame")
  assert r.returncode == 1
  assert r.stderr.strip() == (
      "FATAL Flags parsing error: --config.model.graph.norm_scpe: no such config field; "
      "did you mean --config.model.graph.norm_scope?"), r.stderr[-3000:]


def test_a_checkpoint_of_another_model_names_the_parameter(smt_run, v1_data):
  _, workdir, _ = smt_run
  with pytest.raises(inference.PredictError, match=(
      r"--checkpoint=.*/checkpoints/0 does not match --config \(model 'smt_resnet'\): "
      r"the checkpoint has parameter 'params/graph_final/")):
    predict.predict(tiny("smt_c2d", v1_data), str(workdir), str(_frames_root(v1_data) / "21"))


def test_settings_that_differ_from_the_checkpoints_config_are_noted(smt_run, v1_data):
  config, workdir, _ = smt_run
  clip = predict_input.read_smt(str(_frames_root(v1_data) / "21"), config.data, "1x1")
  other = tiny("smt_c2d_rstg_final", v1_data)          # the whole-clip LayerNorm
  loaded = inference.load_model(other, str(workdir), clip.clips[0])
  assert inference.model_differences(other, loaded.meta) == [
      "model.graph.norm_scope='clip' (the checkpoint was trained with 'per_frame')"]
  assert inference.model_differences(config, loaded.meta) == []
  faster = config.copy_and_resolve_references()  # exact rewrites: speed, not function
  faster.model.graph.scan, faster.model.graph.wavefront = "fused", False
  faster.model.graph.lstm_vjp, faster.model.graph.pair_rewrite = False, False
  assert inference.model_differences(faster, loaded.meta) == []


def test_missing_input_and_unreadable_single_input_are_clear(smt_run, tmp_path):
  config, workdir, _ = smt_run
  with pytest.raises(predict_input.InputError, match="no such file or folder"):
    predict.predict(config, str(workdir), str(tmp_path / "nothing.webm"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(predict_input.InputError, match="holds no video files"):
    predict.predict(config, str(workdir), str(tmp_path / "empty"))
  (tmp_path / "v.mp4").write_bytes(b"")
  with pytest.raises(predict_input.BadInput, match=r"v\.mp4: video file is missing or "
                                                    "empty"):
    predict.predict(config, str(workdir), str(tmp_path / "v.mp4"))


def test_syncmnist_inputs_npy_clips_and_frame_folders(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  config = configs_common.get_config("syncmnist_rstg:tiny")
  clips = tmp_path / "clips"
  clips.mkdir()
  for name in ("b.npy", "a.npy"):
    np.save(clips / name, np.zeros((10, 64, 64), np.uint8))
  (clips / "cover.png").write_bytes(b"")   # beside clips: not a frame folder
  assert predict_input.list_inputs(str(clips), "sync_mnist") == [
      str(clips / "a.npy"), str(clips / "b.npy")]
  frames = tmp_path / "frames"
  frames.mkdir()
  for i in range(12):   # more frames than the data set's 10, in natural name order
    Image.fromarray(np.full((32, 40), 20 * i, np.uint8)).save(frames / f"f{i}.png")
  assert predict_input.list_inputs(str(frames), "sync_mnist") == [str(frames)]
  read = predict_input.read_input(str(frames), config)
  assert read.clips.shape == (1, 10, 64, 64, 1) and read.num_frames == 12
  np.testing.assert_array_equal(
      read.clips[0, :, 0, 0, 0], 20 * np.linspace(0, 11, 10).round().astype(int))
  assert "10 sampled evenly" in read.notes[0]
  np.save(tmp_path / "rgb.npy", np.zeros((10, 64, 64, 3), np.uint8))
  with pytest.raises(predict_input.BadInput, match="3 channels, the SyncMNIST model "
                                                   "takes 1"):
    predict_input.read_input(str(tmp_path / "rgb.npy"), config)
  with pytest.raises(predict_input.InputError, match="--views=3x2"):
    predict_input.read_input(str(clips / "a.npy"), config, "3x2")
  # A model of the 32x32 CPU setting (a channel per digit class: 3) reads frames
  # at its own size, as RGB.
  small = configs_common.get_config("syncmnist_rstg:cpu")
  read = predict_input.read_input(str(frames), small)
  assert read.clips.shape == (1, 10, 32, 32, 3)
  np.testing.assert_array_equal(read.clips[..., 0], read.clips[..., 2])   # grey PNGs
  np.save(tmp_path / "small.npy", np.zeros((10, 32, 32, 3), np.uint8))
  assert predict_input.read_input(str(tmp_path / "small.npy"), small).clips.shape == (
      1, 10, 32, 32, 3)
  np.save(tmp_path / "grey.npy", np.zeros((10, 32, 32), np.uint8))
  with pytest.raises(predict_input.BadInput, match="1 channels, the SyncMNIST model "
                                                   "takes 3"):
    predict_input.read_input(str(tmp_path / "grey.npy"), small)


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                    reason="needs ffmpeg and ffprobe")
def test_predict_on_a_webm_equals_the_model_on_its_decoded_frames(smt_run, tmp_path):
  from rstg_datasets.smt_common import fake_tree  # pylint: disable=g-import-not-at-top
  from rstg_datasets.smt_common import frame_io  # pylint: disable=g-import-not-at-top
  config, workdir, variables = smt_run
  frames = fake_tree.random_frames(fake_tree.FakeVideo("w", None, 12, 60, 80), 5)
  fake_tree.write_webm(str(tmp_path / "w.webm"), frames)
  doc = predict.predict(config, str(workdir), str(tmp_path / "w.webm"))
  # The reference decodes the webm and builds the evaluation's example by hand, so
  # the webm path (ffmpeg, storage, views) of predict is what is checked.
  video = frame_io.encode_video_frames(frame_io.decode_video_file(str(tmp_path / "w.webm")),
                                       256, 90)
  example = {"frames": np.asarray(video.frames, dtype=object),
             "num_frames": len(video.frames), "height": video.height, "width": video.width}
  clips = smt_input.view_clips_of(example, smt_input.view_spec_from_config(config.data,
                                                                           "1x1"), 8)
  model = smt_model.build_model(config.model)
  want = np.asarray(model.apply(variables, clips, train=False))[0]
  np.testing.assert_allclose(doc["videos"][0]["logits"], want, rtol=1e-4, atol=1e-4)
  assert doc["videos"][0]["num_frames"] == 12


def test_stream_smt_last_frame_equals_the_evaluation(smt_run, v1_data, reference_1x1):
  config, workdir, _ = smt_run
  doc = predict.stream(config, str(workdir), str(_frames_root(v1_data) / "22"),
                       log=lambda _: None)
  assert len(doc["frames"]) == 8
  # C2D pools frame pairs: a prediction after every second frame.
  assert [f["top"] is None for f in doc["frames"]] == [True, False] * 4
  np.testing.assert_allclose(doc["stream_logits"], reference_1x1["22"], rtol=1e-4,
                             atol=1e-4)
  assert doc["max_abs_difference"] < 1e-3


def test_explain_draws_the_clip_the_evaluation_gives_the_model(smt_run, v1_data,
                                                              reference_1x1, tmp_path):
  # rstg_jax.tools.explain reads, loads and names as predict does: on a v1 frame
  # folder its logits are the evaluation's 1x1 ones and its frames that clip.
  from rstg_jax.tools import explain  # pylint: disable=g-import-not-at-top
  config, workdir, _ = smt_run
  folder = str(_frames_root(v1_data) / "22")
  out = explain.run(config, str(workdir), folder, str(tmp_path / "explain"),
                    max_frames=2, log=lambda _: None)
  np.testing.assert_allclose(out["logits"], reference_1x1["22"], rtol=1e-4, atol=1e-4)
  clip = predict_input.read_input(folder, config).clips[0]
  assert clip.shape == (8, 64, 64, 3)
  frames = np.load(out["files"]["explain.npz"])["frame_index"]
  assert frames.max() < len(clip)
  assert out["top5"][0]["name"] == inference.class_names(config, {})[0][
      out["top5"][0]["class"]]


@pytest.mark.slow   # three compiles of the SyncMNIST model: ~50 s on 2 busy cores
def test_stream_syncmnist_equals_the_whole_clip_after_every_frame(tmp_path):
  config = configs_common.get_config("syncmnist_rstg_causal:tiny")
  model = syncmnist_model.build_model(config.model)
  variables = _save_random_model(config, model, (1, 10, 64, 64, 1), tmp_path / "run")
  clip = np.random.default_rng(1).integers(0, 256, (10, 64, 64, 1)).astype(np.uint8)
  np.save(tmp_path / "clip.npy", clip)
  doc = predict.stream(config, str(tmp_path / "run"), str(tmp_path / "clip.npy"),
                       log=lambda _: None)
  apply = lambda x: np.asarray(model.apply(variables, x[None], train=False))[0]  # noqa: E731
  np.testing.assert_allclose(doc["stream_logits"], apply(clip), rtol=1e-4, atol=1e-3)
  # The prediction after frame 4 is the model's on the first 4 frames.
  top4 = doc["frames"][3]["top"]
  assert [t["class"] for t in top4] == list(np.argsort(-apply(clip[:4]))[:5])
  assert top4[0]["name"] == pair_labels.label_names()[top4[0]["class"]]


def test_which_configs_stream():
  def reason(name):
    return streaming.reason_not_streamable(configs_common.get_config(name))
  assert reason("syncmnist_rstg_causal:tiny") is None
  assert reason(f"{CAUSAL}:tiny") is None and reason(CAUSAL) is None
  assert reason("syncmnist_rstg") is None          # the paper's graph has no norm
  assert "norm_scope='clip'" in reason("syncmnist_rstg:tiny")
  assert "norm_scope='clip'" in reason("smt_c2d_rstg_final")
  assert "'mean'" in reason("syncmnist_mean_baseline")
  assert "3-frame temporal kernels" in reason("smt_i3d_rstg_final")
  assert "at 'final' only" in reason("smt_i3d_rstg_res3_res4")


def test_class_names_from_an_import_report_or_the_checkpoints_config(v1_data, tmp_path):
  config = tiny(CAUSAL, tmp_path / "no_data_here")
  imported = list(reversed(NAMES))   # an original head's own row order
  names, source = inference.class_names(config, {"class_names": imported})
  assert names == imported and "import report" in source
  saved = loop.config_to_dict(tiny(CAUSAL, v1_data))
  names, source = inference.class_names(config, {"config": saved})
  assert names == NAMES and "checkpoint's config" in source
  names, source = inference.class_names(config, {})
  assert names[3] == "class 3" and "--class_names" in source
  with pytest.raises(inference.PredictError, match="has 3 class names but the model "
                                                   "has 174"):
    inference.class_names(config, {"class_names": ["a", "b", "c"]})
