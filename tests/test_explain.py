"""The attention the graph sows, rstg_jax.tools.explain and rstg_jax.tools.plot_run."""
from __future__ import annotations

import functools
import json

import jax
import numpy as np
import optax
import pytest
from PIL import Image

from rstg_jax.data import predict_input
from rstg_jax.models.graph import graph_layout
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph
from rstg_jax.runtime import checkpointing
from rstg_jax.tools import explain
from rstg_jax.tools import plot_run
from rstg_jax.train.train_state import TrainState

N = 14


@functools.lru_cache(maxsize=None)
def _graph_outputs(adjacency: str, scan: str, remat: bool = False):
  cfg = GraphConfig(node_feat_dim=8, message_dims=8, use_att="simple",
                    scalewise_update=False, image_dim=64, adjacency=adjacency, scan=scan,
                    num_process_iter=2, remat=remat)
  model = RSTGGraph(cfg)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 2, N, 8))
  variables = model.init(jax.random.PRNGKey(1), x)
  plain = model.apply(variables, x)
  out, state = model.apply(variables, x, mutable=["intermediates"])
  return plain, out, state, variables


@pytest.mark.parametrize("adjacency,scan", [("reference", "k_pass"), ("masked", "fused")])
def test_sown_attention_is_what_the_softmax_over_senders_gives(adjacency, scan):
  plain, out, state, variables = _graph_outputs(adjacency, scan)
  assert "intermediates" not in variables  # init does not keep them
  if scan == "k_pass":
    np.testing.assert_array_equal(plain, out)  # sowing changes nothing
  else:  # collecting takes the step-by-step scan; plain runs the skewed one (rounding)
    np.testing.assert_allclose(plain, out, atol=1e-6, rtol=1e-6)
  graphs = explain.graph_intermediates(jax.device_get(state["intermediates"]))
  assert list(graphs) == ["graph"]
  att, nodes = graphs["graph"]["attention"], graphs["graph"]["node_out"]
  assert att.shape == (2, 2, 2, N, N) and nodes.shape == (2, 2, 2, N, 8)  # [K, B, T, ...]
  assert np.all(att >= 0)
  np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
  adj = graph_layout.adjacency(3, 64) > 0
  if adjacency == "reference":
    # The original's semantics: the receiver itself and non-neighbours keep logit 0,
    # so they share one (non-zero) weight in each row.
    others = ~adj
    for row in range(N):
      w = att[..., row, others[row]]
      np.testing.assert_allclose(w, w[..., :1] * np.ones_like(w), rtol=1e-5)
      assert np.all(w > 0)
  else:
    assert np.all(att[..., ~adj] == 0)


@pytest.mark.parametrize("remat", [False, True])  # k_pass remat: a scan over frames
def test_fused_and_k_pass_sow_the_same_attention(remat):
  _, _, k_pass, _ = _graph_outputs("reference", "k_pass", remat)
  _, _, fused, _ = _graph_outputs("reference", "fused", remat)
  a = explain.graph_intermediates(k_pass["intermediates"])["graph"]
  b = explain.graph_intermediates(fused["intermediates"])["graph"]
  np.testing.assert_allclose(a["attention"], b["attention"], atol=1e-5)
  np.testing.assert_allclose(a["node_out"], b["node_out"], atol=1e-4)


def _tiny_syncmnist_config():
  from rstg_configs import syncmnist_common
  c = syncmnist_common.make_config("rstg", "tiny")
  c.model.backbone.width = 8
  c.model.graph.node_feat_dim = c.model.graph.message_dims = 8
  c.model.graph.num_process_iter = 2
  return c


def _save_checkpoint(config, workdir, video_shape):
  from rstg_jax.models.classifiers import syncmnist_model
  model = syncmnist_model.build_model(config.model)
  v = model.init(jax.random.PRNGKey(0), np.zeros((1,) + video_shape, np.uint8), train=False)
  state = TrainState.create(apply_fn=model.apply, params=v["params"], tx=optax.sgd(0.1),
                            batch_stats=v.get("batch_stats", {}))
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"), async_save=False)
  ckpt.save(state, {"config": "test"})
  ckpt.wait_until_finished()
  ckpt.close()


def _not_blank(image: Image.Image) -> None:
  pixels = np.asarray(image.convert("RGB"), np.float32)
  assert pixels.std() > 20, "the image is (almost) one colour"
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 16


def test_explain_writes_the_images_and_page(tmp_path):
  config = _tiny_syncmnist_config()
  rng = np.random.default_rng(0)
  clip = rng.integers(0, 256, (2, 64, 64), dtype=np.uint8)  # [T, H, W]
  np.save(tmp_path / "clip.npy", clip)
  _save_checkpoint(config, tmp_path / "wd", (2, 64, 64, 1))

  out = explain.run(config, str(tmp_path / "wd"), str(tmp_path / "clip.npy"),
                    str(tmp_path / "out"))
  k_iters, t_graph = 2, 2
  att = out["attention"]
  assert att.shape == (k_iters, t_graph, N, N)
  np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
  png = Image.open(out["files"]["explain.png"])
  assert png.size == explain.figure_size_px(k_iters, t_graph)
  _not_blank(png)
  gif = Image.open(out["files"]["explain.gif"])
  assert gif.n_frames == t_graph
  assert gif.size == explain.figure_size_px(1, k_iters)
  _not_blank(gif)
  _not_blank(Image.open(out["files"]["attention.png"]))
  page = (tmp_path / "out" / "index.html").read_text()
  for name in ("explain.gif", "explain.png", "attention.png", out["top5"][0]["name"]):
    assert name in page
  assert (len(out["top5"]) == 5 and
          out["top5"][0]["probability"] >= out["top5"][-1]["probability"])
  saved = np.load(out["files"]["explain.npz"])
  np.testing.assert_array_equal(saved["attention"], att)


def test_a_clip_with_the_wrong_channels_fails_clearly(tmp_path):
  np.save(tmp_path / "rgb.npy", np.zeros((2, 64, 64, 3), np.uint8))
  with pytest.raises(ValueError, match="3 channels"):
    predict_input.read_input(str(tmp_path / "rgb.npy"), _tiny_syncmnist_config())


def test_frame_folder_is_read_in_name_order(tmp_path):
  for i in (2, 0, 1):
    Image.fromarray(np.full((32, 40), 100 * i, np.uint8)).save(tmp_path / f"f{i}.png")
  (path,) = predict_input.list_inputs(str(tmp_path), "sync_mnist")  # one clip
  video = predict_input.read_input(path, _tiny_syncmnist_config()).clips[0]
  assert video.shape == (3, 64, 64, 1)
  np.testing.assert_array_equal(video[:, 0, 0, 0], [0, 100, 200])


def _fake_workdir(path, top1):
  from clu import metric_writers
  from rstg_jax.train import eval_report
  path.mkdir()
  writer = metric_writers.create_default_writer(str(path), asynchronous=False)
  for step in (10, 20, 30):
    writer.write_scalars(step, {"train_loss": 3.0 - step / 20, "train_top1": step / 100,
                                "train_learning_rate": 1e-3 / step,
                                "clips_per_sec": 5.0 + step / 10})
  writer.write_scalars(30, {"eval_loss": 2.5, "eval_top1": top1, "eval_top5": 0.9})
  writer.close()
  rng = np.random.default_rng(1)
  eval_report.write_eval_report(
      str(path), "validation", logits=rng.normal(size=(40, 6)),
      labels=np.arange(40) % 6, class_names=[f"class {c}" for c in "abcdef"],
      confusion_png=False)


def test_plot_run_reads_the_events_and_draws_each_figure(tmp_path):
  _fake_workdir(tmp_path / "a", 0.4)
  _fake_workdir(tmp_path / "b", 0.6)
  scalars = plot_run.read_scalars(str(tmp_path / "a"))
  steps, loss = scalars["train_loss"]
  np.testing.assert_array_equal(steps, [10, 20, 30])
  np.testing.assert_allclose(loss, [2.5, 2.0, 1.5])
  np.testing.assert_allclose(scalars["eval_top1"][1], [0.4])

  files = plot_run.plot_workdirs([str(tmp_path / "a"), str(tmp_path / "b")],
                                 str(tmp_path / "plots"))
  names = sorted(p.rsplit("/", 1)[1] for p in files)
  assert names == ["classes_a.png", "classes_b.png", "confusion_a.png", "confusion_b.png",
                   "curves.png"]
  for p in files:
    image = Image.open(p)
    assert min(image.size) >= 250
    _not_blank(image)


def test_per_class_accuracy_falls_back_to_the_summary(tmp_path):
  (tmp_path / "summary.json").write_text(json.dumps(
      {"task": "sync_mnist", "test_per_class_top1": [0.5] * 45 + [None]}))
  names, acc, counts, source = plot_run.last_per_class(str(tmp_path))
  assert names[0] == "0-1" and names[-1] == "no_sync" and counts is None
  assert np.isnan(acc[-1]) and "test_per_class_top1" in source
