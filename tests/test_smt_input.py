"""The Something-Something training pipeline on a tiny built v1 data set."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rstg_datasets.smt_common import class_names
from rstg_datasets.smt_common import fake_tree as ft
from rstg_datasets.smt_common.builder_base import SmtConfig
from rstg_datasets.something_something_v1 import SomethingSomethingV1
from rstg_jax.data import smt_input
from rstg_jax.data import video_augment

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


def _take(ds, n):
  return [b for _, b in zip(range(n), ds.as_numpy_iterator())]


def _train(builder, **kw):
  args = dict(batch_size=2, num_frames=4, crop_size=32, process_index=0, process_count=1,
              shuffle_buffer=8)
  args.update(kw)
  return smt_input.make_train_dataset(builder, **args)


def test_batches_have_shapes_labels_and_normalisation(builder):
  (batch,) = _take(_train(builder, brightness_delta=0.0, crop_scale=(0.5, 0.5)), 1)
  assert batch["video"].shape == (2, 4, 32, 32, 3) and batch["video"].dtype == np.float32
  assert batch["label"].dtype == np.int32
  for video, label in zip(batch["video"], batch["label"]):
    k = LABELS.index(label)  # the clip's content identifies its video
    raw = video * video_augment.PIXEL_STD + video_augment.PIXEL_MEAN
    assert raw.max() == pytest.approx(40 + 30 * k, abs=4)
  (raw,) = _take(_train(builder, normalize_on_host=False), 1)
  assert raw["video"].dtype == np.uint8


def test_deterministic_per_seed_and_new_augmentation_every_epoch(builder):
  kw = dict(sampling="segment", crop_scale=(0.5, 1.0), batch_size=1)
  a = _take(_train(builder, seed=3, **kw), 12)
  b = _take(_train(builder, seed=3, **kw), 12)
  c = _take(_train(builder, seed=4, **kw), 12)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["video"], y["video"])
    np.testing.assert_array_equal(x["label"], y["label"])
  assert any(not np.array_equal(x["video"], z["video"]) for x, z in zip(a, c))
  # 6 videos: the first 12 examples are two epochs; the same video differs.
  first, second = a[:6], a[6:]
  assert sorted(int(x["label"][0]) for x in first) == sorted(LABELS)
  for label in LABELS:
    e1 = next(x["video"] for x in first if x["label"][0] == label)
    e2 = next(x["video"] for x in second if x["label"][0] == label)
    assert not np.array_equal(e1, e2)


def test_process_shards_are_disjoint_and_cover_the_split(builder):
  seen = []
  for p in range(2):
    ds = _train(builder, batch_size=1, process_index=p, process_count=2, repeat=False)
    seen.append({int(x["label"][0]) for x in ds.as_numpy_iterator()})
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(LABELS)


def test_flip_swaps_left_right_labels_and_mirrors_the_clip(builder):
  table = class_names.flip_label_map(NAMES)
  ds = _train(builder, batch_size=6, flip_prob=1.0, flip_label_map=table,
              brightness_delta=0.0, crop_scale=(1.0, 1.0), repeat=False, shuffle_buffer=1)
  (batch,) = list(ds.as_numpy_iterator())
  labels = sorted(batch["label"].tolist())
  assert labels == sorted([RIGHT_TO_LEFT] + LABELS[1:])  # only the pair changed
  for video in batch["video"]:
    assert video[:, :, :8].mean() < video[:, :, -8:].mean()  # bright half now on the right
  with pytest.raises(ValueError, match="flip_label_map"):
    list(_train(builder, flip_prob=0.5).take(1))


def test_datasets_from_an_ml_collections_config(builder):
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(name="something_something_v1/short48", num_frames=4,
                                       image_size=32, num_eval_spatial_clips=3,
                                       num_eval_temporal_clips=2, brightness_max_delta=0.1))
  again = smt_input.builder_from_config(cfg, data_dir=builder.data_dir_root)
  assert again.info.splits["train"].num_examples == 6
  (batch,) = _take(smt_input.train_dataset_from_config(
      again, cfg, batch_size=2, seed=0, process_index=0, process_count=1), 1)
  assert batch["video"].shape == (2, 4, 32, 32, 3)
  ev = smt_input.eval_dataset_from_config(again, cfg, batch_size=6, split="train",
                                          process_index=0, process_count=1)
  assert ev.views_per_video == 6 and ev.num_batches == 6
  first = next(ev.dataset.as_numpy_iterator())
  assert first["video"].shape == (6, 4, 37, 37, 3)  # 3x2 views of the full short side
