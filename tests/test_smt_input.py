"""The Something-Something input (random access, grain) on a tiny built v1 data set."""
from __future__ import annotations

import collections

import numpy as np
import pytest
from PIL import Image
import tensorflow_datasets as tfds

from rstg_datasets.smt_common import class_names
from rstg_datasets.smt_common import fake_tree as ft
from rstg_datasets.smt_common.builder_base import SmtConfig
from rstg_datasets.something_something_v1 import SomethingSomethingV1
from rstg_jax.data import smt_input

NAMES = ft.fake_class_names()
LEFT_TO_RIGHT = NAMES.index("Pushing something from left to right")
RIGHT_TO_LEFT = NAMES.index("Pushing something from right to left")
# Video k shows brightness 40 + 30 k in its left half and 0 in its right half.
LABELS = [LEFT_TO_RIGHT, 3, 50, 99, 120, 173]


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
  root = tmp_path_factory.mktemp("smt_input")
  videos = [ft.FakeVideo(str(100 + k), NAMES[lab], 5 + 4 * k, 48, 64)
            for k, lab in enumerate(LABELS)]
  manual = root / "manual"
  ft.write_v1_tree(str(manual), {"train": videos,
                                 "validation": [ft.FakeVideo("900", NAMES[0], 3, 48, 64)],
                                 "test": [ft.FakeVideo("901", None, 3, 48, 64)]})
  for k, video in enumerate(videos):
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :32] = 40 + 30 * k
    for t in range(video.num_frames):
      Image.fromarray(frame).save(
          manual / "20bn-something-something-v1" / video.video_id / f"{t + 1:05d}.jpg",
          quality=95)
  return ft.prepare(SomethingSomethingV1, str(manual), str(root / "data"),
                    config=SmtConfig(name="short48", short_side=48))


def _take(stream, n):
  return [b for _, b in zip(range(n), stream)]


def _train(builder, *, batch_size=2, seed=0, slice_index=0, num_slices=1, **settings):
  args = dict(num_frames=4, crop_size=32)
  args.update(settings)
  return smt_input.TrainSliceInput(
      smt_input.ExampleSource(builder, "train"), slice_index=slice_index,
      num_slices=num_slices, rows=batch_size, seed=seed,
      settings=smt_input.ClipSettings(**args), num_workers=2)


def test_the_build_is_random_access_and_batches_have_shapes_labels_and_pixels(builder):
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  (batch,) = _take(_train(builder, brightness_delta=0.0, crop_scale=(0.5, 0.5)).iterate(0), 1)
  assert batch["video"].shape == (2, 4, 32, 32, 3) and batch["video"].dtype == np.uint8
  assert batch["label"].dtype == np.int32
  for video, label in zip(batch["video"], batch["label"]):
    k = LABELS.index(label)  # the clip's content identifies its video
    assert int(video.max()) == pytest.approx(40 + 30 * k, abs=4)


def test_deterministic_per_seed_and_new_augmentation_every_epoch(builder):
  kw = dict(sampling="segment", crop_scale=(0.5, 1.0), batch_size=1)
  a = _take(_train(builder, seed=3, **kw).iterate(0), 12)
  b = _take(_train(builder, seed=3, **kw).iterate(0), 12)
  c = _take(_train(builder, seed=4, **kw).iterate(0), 12)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["video"], y["video"])
    np.testing.assert_array_equal(x["label"], y["label"])
  assert any(not np.array_equal(x["video"], z["video"]) for x, z in zip(a, c))
  # 6 videos: the first 12 examples are two epochs, each a new order of all six.
  first, second = a[:6], a[6:]
  assert sorted(int(x["label"][0]) for x in first) == sorted(LABELS)
  assert sorted(int(x["label"][0]) for x in second) == sorted(LABELS)
  assert [int(x["label"][0]) for x in first] != [int(x["label"][0]) for x in second]
  for label in LABELS:
    e1 = next(x["video"] for x in first if x["label"][0] == label)
    e2 = next(x["video"] for x in second if x["label"][0] == label)
    assert not np.array_equal(e1, e2)


def test_a_resumed_stream_equals_the_uninterrupted_one_and_reads_no_earlier_clip(builder):
  full = _take(_train(builder, seed=5, batch_size=2).iterate(0), 7)
  resumed_input = _train(builder, seed=5, batch_size=2)
  resumed_input.source.record_reads = True
  resumed = _take(resumed_input.iterate(4), 3)
  for x, y in zip(full[4:], resumed):
    np.testing.assert_array_equal(x["video"], y["video"])
    np.testing.assert_array_equal(x["label"], y["label"])
  # Rows 8, 9, ... (step 4 on) only: no clip of steps 0-3 was read or decoded.
  # grain's prefetch threads keep loading while we look: a position is recorded
  # before its example is read, so copy the reads first; every read then has its
  # position in the later copy (a multiset inclusion, not equality).
  reads = collections.Counter(list(resumed_input.source.reads))
  positions = list(resumed_input.positions_read)
  assert min(positions) == 8 and {8, 9, 10, 11, 12, 13} <= set(positions)
  assert not reads - collections.Counter(resumed_input.example_index(g) for g in positions)
  assert sum(reads.values()) >= 6


def test_slices_are_disjoint_and_cover_the_split(builder):
  seen = []
  for p in range(2):
    inp = _train(builder, batch_size=1, slice_index=p, num_slices=2)
    assert inp.steps_per_epoch == 3
    seen.append({int(x["label"][0]) for x in _take(inp.iterate(0), 3)})
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(LABELS)


def test_flip_swaps_left_right_labels_and_mirrors_the_clip(builder):
  table = tuple(int(x) for x in class_names.flip_label_map(NAMES))
  (batch,) = _take(_train(builder, batch_size=6, flip_prob=1.0, flip_label_map=table,
                          brightness_delta=0.0, crop_scale=(1.0, 1.0)).iterate(0), 1)
  labels = sorted(batch["label"].tolist())
  assert labels == sorted([RIGHT_TO_LEFT] + LABELS[1:])  # only the pair changed
  for video in batch["video"]:
    assert video[:, :, :8].mean() < video[:, :, -8:].mean()  # bright half now on the right
  with pytest.raises(ValueError, match="flip_label_map"):
    smt_input.ClipSettings(flip_prob=0.5)


def test_inputs_from_an_ml_collections_config(builder):
  from rstg_configs import smt_common  # pylint: disable=g-import-not-at-top
  cfg = smt_common.data_config(num_frames=4, image_size=32)
  cfg.name = "v1/short48"
  cfg.data_dir = str(builder.data_dir_root)
  again = smt_input.load_builder(cfg)
  assert again.info.splits["train"].num_examples == 6
  settings = smt_input.clip_settings(cfg, NAMES)
  assert settings.crop_scale == (32 / 37, 32 / 37)   # the paper's 224 of 256
  ev = smt_input.EvalInput(smt_input.ExampleSource(again, "train"), batch_size=6,
                           views=smt_input.view_spec_from_config(cfg, "3x2"),
                           num_frames=4, process_index=0, process_count=1)
  assert ev.views_per_video == 6 and ev.num_batches == 6
  first = next(iter(ev))
  assert first["video"].shape == (6, 4, 37, 37, 3)  # 3x2 views of the full short side
  assert smt_input.decode_video_ids(first["video_id"]) == [
      smt_input.decode_video_ids(first["video_id"])[0]] * 6


def test_bad_data_configs_fail_naming_the_field_or_folder(builder, tmp_path):
  from rstg_configs import smt_common  # pylint: disable=g-import-not-at-top
  cfg = smt_common.data_config(num_frames=4, image_size=32)
  cfg.name = "v3"
  with pytest.raises(smt_input.DataError, match=r"config.data.name='v3': use"):
    smt_input.load_builder(cfg)
  cfg.name, cfg.data_dir = "v1", str(tmp_path)
  with pytest.raises(smt_input.DataError, match=r"config.data.name='v1' is not built in "):
    smt_input.load_builder(cfg)
  with pytest.raises(smt_input.DataError, match=r"split 'holdout' is not in the build"):
    smt_input.ExampleSource(builder, "holdout")
