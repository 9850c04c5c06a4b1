"""Multi-view layout, per-video averaging, padded eval batches, eval report files."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from rstg_datasets.smt_common import fake_tree as ft
from rstg_datasets.smt_common.builder_base import SmtConfig
from rstg_datasets.something_something_v1 import SomethingSomethingV1
from rstg_jax.data import multiview
from rstg_jax.data import smt_input
from rstg_jax.train import eval_report

NAMES = ft.fake_class_names()


def _jpeg(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG", quality=98)
  return buffer.getvalue()


def test_view_clips_temporal_major_layout_and_diagonal_crops():
  # 40 frames, frame t has brightness 5 t: the temporal view is readable from values.
  n, t_clip = 40, 4
  encoded = tf.constant([_jpeg(np.full((64, 96, 3), 5 * t, np.uint8)) for t in range(n)])
  spec = multiview.ViewSpec(spatial_views=3, temporal_views=2, crop_size=32, short_side=None)
  clips = multiview.view_clips(encoded, n, 64, 96, spec, t_clip).numpy()
  assert clips.shape == (6, t_clip, 32, 32, 3)
  first = np.linspace(0, n - 1, t_clip).astype(int)
  shift = round(0.5 * n / t_clip)
  second = np.minimum(np.linspace(shift, n - 1 + shift, t_clip).astype(int), n - 1)
  for v in range(6):
    want = first if v < 3 else second  # temporal-major: views 0-2 sampling 0
    np.testing.assert_allclose(clips[v].mean(axis=(1, 2, 3)), 5 * want, atol=1.5)
  # Spatial views: 16x16 blocks of distinct values; the crop's top-left block tells
  # where it starts: dl = linspace(0, 32, 3), dc = linspace(0, 64, 3).
  blocks = (np.arange(4 * 6).reshape(4, 6) * 10).astype(np.uint8)
  frame = np.repeat(np.repeat(blocks, 16, 0), 16, 1)[..., None].repeat(3, -1)
  encoded = tf.constant([_jpeg(frame)] * 5)
  clips = multiview.view_clips(encoded, 5, 64, 96, spec, 2).numpy()
  for s, (dl, dc) in enumerate([(0, 0), (16, 32), (32, 64)]):
    assert abs(clips[s, 0, 4, 4, 0] - blocks[dl // 16, dc // 16]) < 3


def test_dense_11x2_preset_at_256():
  spec = multiview.view_spec("11x2")
  assert (spec.spatial_views, spec.temporal_views, spec.crop_size, spec.short_side) == (
      11, 2, 256, 256)
  encoded = tf.constant([_jpeg(np.full((100, 132, 3), 9 * t, np.uint8)) for t in range(9)])
  clips = multiview.view_clips(encoded, 9, 100, 132, spec, 4)
  assert clips.shape == (22, 4, 256, 256, 3)
  with pytest.raises(ValueError, match="unknown view preset"):
    multiview.view_spec("5x5")


def test_view_averager_means_views_and_rejects_miscounts():
  logits = np.array([[1.0, 0], [3, 0], [0, 2], [0, 4], [9, 9]])
  label = np.array([0, 0, 1, 1, 0])
  video = np.array([5, 5, 2, 2, -1])
  mask = np.array([1, 1, 1, 1, 0])
  avg = multiview.ViewAverager(2)
  avg.update(logits[:3], label[:3], video[:3], mask[:3], np.array([b"a", b"a", b"b"]))
  avg.update(logits[3:], label[3:], video[3:], mask[3:], np.array([b"b", b""]))
  out = avg.result()
  np.testing.assert_array_equal(out["video_index"], [2, 5])
  np.testing.assert_allclose(out["logits"], [[0, 3], [2, 0]])
  np.testing.assert_array_equal(out["label"], [1, 0])
  np.testing.assert_array_equal(out["video_id"], [b"b", b"a"])
  bad = multiview.ViewAverager(3)
  bad.update(logits, label, video, mask)
  with pytest.raises(ValueError, match="expected 3 each"):
    bad.result()


@pytest.fixture(scope="module")
def seven_videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("smt7")
  videos = [ft.FakeVideo(f"{700 + k}", NAMES[10 * k], 3 + 2 * k, 60, 80) for k in range(7)]
  ft.write_v1_tree(str(root / "manual"), {"train": [ft.FakeVideo("1", NAMES[0], 3, 60, 80)],
                                           "validation": videos,
                                           "test": [ft.FakeVideo("900", None, 5, 60, 80)]})
  builder = ft.prepare(SomethingSomethingV1, str(root / "manual"), str(root / "data"),
                       config=SmtConfig(name="short40", short_side=40))
  return builder, videos


def test_seven_video_eval_with_batch_4_counts_each_video_once(seven_videos, tmp_path):
  builder, videos = seven_videos
  spec = multiview.ViewSpec(spatial_views=3, temporal_views=2, crop_size=32, short_side=40)
  ev = smt_input.EvalInput(smt_input.ExampleSource(builder, "validation"), batch_size=4,
                           views=spec, num_frames=4, process_index=0, process_count=1)
  class_names = builder.info.features["label"].names
  batches = list(ev)
  assert ev.num_batches == len(ev) == len(batches) == 11 and ev.num_videos == 7  # 42 clips + 2 pads
  cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert cat["video"].shape == (44, 4, 32, 32, 3)
  assert cat["mask"].sum() == 42 and np.all(cat["mask"][-2:] == 0)
  real = cat["mask"] > 0
  np.testing.assert_array_equal(np.bincount(cat["video_index"][real]), [6] * 7)
  by_id = {v.video_id: NAMES.index(v.class_name) for v in videos}
  ids = smt_input.decode_video_ids(cat["video_id"])
  for vid, lab in zip(np.asarray(ids)[real], cat["label"][real]):
    assert by_id[vid] == lab
  # An oracle model's logits: every video right once -> top-1 1.0 over 7 videos.
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(44, 174)) + 10 * np.eye(174)[np.maximum(cat["label"], 0)]
  result = eval_report.write_eval_report(
      str(tmp_path), "validation", logits=logits, labels=cat["label"],
      class_names=class_names, mask=cat["mask"], video_index=cat["video_index"],
      video_ids=ids, views_per_video=6, confusion_png=False)
  assert result == {"num_videos": 7, "top1": 1.0, "top5": 1.0, "mean_class_accuracy": 1.0}
  matrix, names = eval_report.read_confusion_json(str(tmp_path / "validation_confusion.json"))
  assert names == NAMES and matrix.sum() == 7 and np.trace(matrix) == 7
  per_class = json.loads((tmp_path / "validation_per_class.json").read_text())
  assert per_class[NAMES[10]] == {"accuracy": 1.0, "count": 1}
  assert per_class[NAMES[1]] == {"accuracy": None, "count": 0}
  preds = eval_report.read_predictions(str(tmp_path / "validation_predictions.txt"))
  assert sorted(preds) == sorted((v.video_id, v.class_name) for v in videos)

  # Two processes: same number of batches, disjoint videos, all 7 covered once.
  one_view = multiview.ViewSpec(spatial_views=1, temporal_views=1, crop_size=32, short_side=40)
  seen = []
  for p in range(2):
    ev_p = smt_input.EvalInput(smt_input.ExampleSource(builder, "validation"),
                               batch_size=4, views=one_view, num_frames=4,
                               process_index=p, process_count=2)
    got = list(ev_p)
    assert len(got) == ev_p.num_batches == 1  # max(4, 3) clips -> one batch of 4
    assert got[0]["video"].shape == (4, 4, 32, 32, 3)
    seen += [int(i) for b in got for i, m in zip(b["video_index"], b["mask"]) if m > 0]
  assert sorted(seen) == list(range(7))


def test_predictions_file_round_trips_for_the_unlabelled_split(seven_videos, tmp_path):
  builder, _ = seven_videos
  ev = smt_input.EvalInput(smt_input.ExampleSource(builder, "test"), batch_size=2,
                           views="1x1", num_frames=4, process_index=0, process_count=1)
  (batch,) = list(ev)
  class_names = builder.info.features["label"].names
  assert list(batch["label"]) == [-1, 0] and list(batch["mask"]) == [1, 0]
  logits = np.zeros((2, 174))
  logits[:, 113] = 1.0
  result = eval_report.write_eval_report(
      str(tmp_path), "test", logits=logits, labels=batch["label"], class_names=class_names,
      mask=batch["mask"], video_index=batch["video_index"],
      video_ids=smt_input.decode_video_ids(batch["video_id"]))
  assert result == {"num_videos": 1}  # no accuracy for an unlabelled split
  assert not (tmp_path / "test_metrics.json").exists()
  assert eval_report.read_predictions(str(tmp_path / "test_predictions.txt")) == [
      ("900", NAMES[113])]
  # Names with commas/apostrophes survive; ids and names come back as written.
  ids = ["1", "22", "333"]
  labels = [NAMES.index("Putting something that can't roll onto a slanted surface, so it "
                        "slides down"), 0, 173]
  eval_report.write_predictions(str(tmp_path / "p.txt"), ids, labels, NAMES)
  assert eval_report.read_predictions(str(tmp_path / "p.txt")) == [
      (i, NAMES[l]) for i, l in zip(ids, labels)]


def test_metrics_and_confusion_png_on_a_small_problem(tmp_path):
  names = ["push left", "push right", "hold", "drop"]
  logits = np.array([[5, 1, 0, 0], [0, 5, 1, 0], [1, 0, 0, 5], [0, 1, 5, 0], [0, 0, 1, 5.0]])
  labels = np.array([0, 1, 2, 2, 3])
  m = eval_report.classification_metrics(logits, labels)
  assert m["top1"] == 4 / 5
  assert m["top5"] == 1.0
  np.testing.assert_allclose(m["per_class_accuracy"], [1, 1, 0.5, 1])
  assert eval_report.topk_correct(logits, labels, 2).tolist() == [True, True, False, True, True]
  result = eval_report.write_eval_report(str(tmp_path), "val", logits=logits, labels=labels,
                                         class_names=names)
  assert result["top1"] == 0.8 and result["mean_class_accuracy"] == pytest.approx(0.875)
  matrix, _ = eval_report.read_confusion_json(str(tmp_path / "val_confusion.json"))
  np.testing.assert_array_equal(matrix, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
  png = Image.open(tmp_path / "val_confusion.png")
  assert png.format == "PNG" and min(png.size) > 300
  pixels = np.asarray(png.convert("RGB")).astype(int)
  assert (np.abs(pixels - 255).sum(-1) > 100).mean() > 0.05  # something is drawn
