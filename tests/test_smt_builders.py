"""Something-Something v1/v2 builders on tiny trees in the official layout."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from rstg_datasets.smt_common import fake_tree as ft
from rstg_datasets.smt_common import frame_io
from rstg_datasets.smt_common import split_files
from rstg_datasets.smt_common.builder_base import SmtConfig
from rstg_datasets.something_something_v1 import SomethingSomethingV1
from rstg_datasets.something_something_v2 import SomethingSomethingV2
from rstg_jax.data import smt_input

NAMES = ft.fake_class_names()
SMALL = SmtConfig(name="short40", short_side=40)  # small frames keep the tests fast


def _examples(builder, split):
  source = builder.as_data_source(split)
  examples = [dict(source[i]) for i in range(len(source))]
  for e in examples:
    e["frames"] = np.stack(e["frames"])
  return {_text(e["video_id"]): e for e in examples}


def _text(value):
  return value.decode() if isinstance(value, bytes) else str(value)


def _v1_splits():
  return {
      "train": [ft.FakeVideo("101", NAMES[7], 5), ft.FakeVideo("102", NAMES[100], 9),
                ft.FakeVideo("103", NAMES[7], 3)],
      "validation": [ft.FakeVideo("201", NAMES[173], 7, height=120, width=90),
                     ft.FakeVideo("202", NAMES[0], 11)],
      "test": [ft.FakeVideo("301", None, 5)],
  }


def test_v1_builds_with_labels_of_the_csv(tmp_path):
  splits = _v1_splits()
  ft.write_v1_tree(str(tmp_path / "manual"), splits)
  builder = ft.prepare(SomethingSomethingV1, str(tmp_path / "manual"), str(tmp_path / "data"))
  assert builder.info.config_name == "short256"  # the default stores short side 256
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} == {
      "train": 3, "validation": 2, "test": 1}
  assert builder.info.features["label"].names == NAMES
  for split, videos in splits.items():
    got = _examples(builder, split)
    for video in videos:
      e = got[video.video_id]
      want = -1 if video.class_name is None else NAMES.index(video.class_name)
      assert e["label"] == want
      assert e["num_frames"] == video.num_frames == len(e["frames"])
  portrait = _examples(builder, "validation")["201"]
  assert portrait["frames"].shape[1:] == (int(120 / 90 * 256), 256, 3)  # short side 256
  landscape = _examples(builder, "train")["102"]
  assert landscape["frames"].shape[1:] == (256, int(132 / 100 * 256), 3)
  assert builder.info.metadata["bad_input"]["not_in_any_split"]["count"] == 0
  # Frames keep their order: frame t of the stored video matches file t.
  src = np.asarray(Image.open(tmp_path / "manual/20bn-something-something-v1/102/00004.jpg"))
  src = np.asarray(Image.fromarray(src).resize((int(132 / 100 * 256), 256),
                                              Image.Resampling.BICUBIC), np.float32)
  errors = [np.abs(landscape["frames"][t].astype(np.float32) - src).mean() for t in range(9)]
  assert int(np.argmin(errors)) == 3 and errors[3] < 3.0


def test_v1_bad_input_is_skipped_counted_and_labels_stay_aligned(tmp_path):
  manual = tmp_path / "manual"
  splits = {
      "train": [ft.FakeVideo("1", NAMES[1], 3), ft.FakeVideo("2", NAMES[2], 5),
                ft.FakeVideo("3", NAMES[3], 3), ft.FakeVideo("4", NAMES[4], 5),
                ft.FakeVideo("5", NAMES[5], 3), ft.FakeVideo("6", NAMES[6], 7)],
      "validation": [ft.FakeVideo("7", NAMES[7], 3)],
      "test": [ft.FakeVideo("8", None, 3)],
  }
  ft.write_v1_tree(str(manual), splits)
  frames = manual / "20bn-something-something-v1"
  for f in (frames / "2").iterdir():
    f.unlink()  # empty folder
  (frames / "2").rmdir()  # ... then missing
  for f in (frames / "3").iterdir():
    f.unlink()  # empty folder
  (frames / "4" / "00002.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
  Image.new("RGB", (50, 40)).save(frames / "5" / "00003.jpg")  # a frame of another size
  os.makedirs(frames / "999")  # a folder that no split lists
  Image.new("RGB", (50, 40)).save(frames / "999" / "00001.jpg")

  builder = ft.prepare(SomethingSomethingV1, str(manual), str(tmp_path / "data"),
                       config="original")
  report = builder.info.metadata["bad_input"]
  train = report["splits"]["train"]
  assert train["missing_video"]["count"] == 2
  assert sorted(train["missing_video"]["video_ids"]) == ["2", "3"]
  assert train["unreadable_video"]["count"] == 2
  assert sorted(train["unreadable_video"]["video_ids"]) == ["4", "5"]
  assert any("00002.jpg" in e for e in train["unreadable_video"]["first_errors"])
  assert report["not_in_any_split"] == {"count": 1, "video_ids": ["999"]}
  got = _examples(builder, "train")
  assert sorted(got) == ["1", "6"]
  assert got["1"]["label"] == 1 and got["6"]["label"] == 6  # no shift after skips
  # The original config keeps the original JPEG bytes.
  stored = smt_input.ExampleSource(builder, "train")
  by_id = {e["video_id"]: e for e in (stored[i] for i in range(len(stored)))}
  assert by_id["6"]["frames"][4] == (frames / "6" / "00005.jpg").read_bytes()
  assert (by_id["6"]["height"], by_id["6"]["width"]) == (100, 132)

  # strict=True: the first bad video stops the build, naming its folder.
  with pytest.raises(ValueError, match=r"strict=True: video 2 .*v1/2: frame folder does not exist"):
    ft.prepare(SomethingSomethingV1, str(manual), str(tmp_path / "data_strict"),
               config="original", strict=True)


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_v1_unknown_class_and_duplicated_ids_are_errors_naming_the_file(tmp_path):
  manual = tmp_path / "manual"
  ft.write_v1_tree(str(manual), {"train": [ft.FakeVideo("1", NAMES[1], 3)],
                                 "validation": [ft.FakeVideo("2", NAMES[2], 3)],
                                 "test": []})
  train_csv = manual / "something-something-v1-train.csv"
  train_csv.write_text(f"1;{NAMES[1]}\n7;Juggling something\n")
  with pytest.raises(ValueError, match=r"something-something-v1-train\.csv:2: class "
                                       r"'Juggling something' of video 7 is not in"):
    ft.prepare(SomethingSomethingV1, str(manual), str(tmp_path / "d1"), config=SMALL)
  train_csv.write_text(f"1;{NAMES[1]}\n2;{NAMES[3]}\n")  # id 2 is also in validation
  with pytest.raises(ValueError, match=r"video id 2 is listed twice: at .*train\.csv:2 "
                                       r"and at .*validation\.csv:1"):
    ft.prepare(SomethingSomethingV1, str(manual), str(tmp_path / "d2"), config=SMALL)

  index = {n: i for i, n in enumerate(NAMES)}
  dup = _write(tmp_path / "dup.csv", f"5;{NAMES[0]}\n6;{NAMES[1]}\n5;{NAMES[0]}\n")
  with pytest.raises(ValueError, match=r"video id 5 is listed twice: at .*dup\.csv:1 "
                                       r"and at .*dup\.csv:3"):
    split_files.check_unique_ids({"train": split_files.read_v1_split(dup, index, True)})
  bad = _write(tmp_path / "bad.csv", f"5;{NAMES[0]}\n6\n")
  with pytest.raises(ValueError, match=r"bad\.csv:2: expected '<video_id>;<class name>'"):
    split_files.read_v1_split(bad, index, True)
  labels = _write(tmp_path / "labels.csv", "a\nb\n\nc\n")
  with pytest.raises(ValueError, match=r"labels\.csv:3: blank line"):
    split_files.read_v1_labels(labels)
  labels = _write(tmp_path / "labels2.csv", "a\nb\na\n")
  with pytest.raises(ValueError, match=r"labels2\.csv: class 'a' appears twice"):
    split_files.read_v1_labels(labels)
  with pytest.raises(ValueError, match=r"expected 174 classes, found 2"):
    split_files.read_v1_labels(_write(tmp_path / "l3.csv", "a\nb\n"), num_classes=174)


def test_v2_json_readers_map_templates_and_reject_bad_entries(tmp_path):
  labels = {"Putting something on a surface": "1", "Holding something": "0"}
  lpath = _write(tmp_path / "labels.json", json.dumps(labels))
  names = split_files.read_v2_labels(lpath)
  assert names == ["Holding something", "Putting something on a surface"]
  index = {n: i for i, n in enumerate(names)}
  items = [{"id": "9", "label": "putting a cup on a table",
            "template": "Putting [something] on a surface", "placeholders": ["a cup"]}]
  entries = split_files.read_v2_split(_write(tmp_path / "t.json", json.dumps(items)), index, True)
  assert [(e.video_id, e.label) for e in entries] == [("9", 1)]
  items.append({"id": "10", "template": "Juggling [something]"})
  with pytest.raises(ValueError, match=r"t2\.json\[1\]: class 'Juggling something'"):
    split_files.read_v2_split(_write(tmp_path / "t2.json", json.dumps(items)), index, True)
  gap = _write(tmp_path / "gap.json", json.dumps({"a": "0", "b": "2"}))
  with pytest.raises(ValueError, match=r"gap\.json: class ids are not 0\.\.1"):
    split_files.read_v2_labels(gap)


@pytest.mark.skipif(not frame_io.ffmpeg_available(),
                    reason="needs the ffmpeg/ffprobe programs (apt-get install -y ffmpeg)")
def test_v2_builds_from_webm_with_labels_and_skips(tmp_path):
  manual = tmp_path / "manual"
  splits = {
      "train": [ft.FakeVideo("11", NAMES[3], 7, 48, 64), ft.FakeVideo("12", NAMES[5], 9, 48, 64),
                ft.FakeVideo("13", NAMES[5], 5, 48, 64), ft.FakeVideo("14", NAMES[6], 5, 48, 64)],
      "validation": [ft.FakeVideo("21", NAMES[170], 5, 48, 64)],
      "test": [ft.FakeVideo("31", None, 3, 48, 64)],
  }
  ft.write_v2_tree(str(manual), splits)
  videos = manual / "20bn-something-something-v2"
  (videos / "13.webm").unlink()
  (videos / "14.webm").write_bytes(b"\x1aE\xdf\xa3 not a real webm")
  builder = ft.prepare(SomethingSomethingV2, str(manual), str(tmp_path / "data"), config=SMALL)
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} == {
      "train": 2, "validation": 1, "test": 1}
  report = builder.info.metadata["bad_input"]["splits"]["train"]
  assert report["missing_video"]["video_ids"] == ["13"]
  assert report["unreadable_video"]["video_ids"] == ["14"]
  got = _examples(builder, "train")
  assert (got["11"]["label"], got["12"]["label"]) == (3, 5)
  assert (got["11"]["num_frames"], got["12"]["num_frames"]) == (7, 9)  # every frame decoded
  assert got["11"]["frames"].shape[1:] == (40, int(64 / 48 * 40), 3)
  assert _examples(builder, "validation")["21"]["label"] == 170
  assert _examples(builder, "test")["31"]["label"] == -1


def test_label_and_split_files_that_are_not_utf8_name_file_line_and_encoding(tmp_path):
  latin1 = tmp_path / "labels.csv"
  latin1.write_bytes("Holding something\nPutting caf\u00e9 on something\n".encode("latin-1"))
  with pytest.raises(ValueError, match=r"labels\.csv:2: not UTF-8 text \(byte 0xe9 at "
                                       r"column 12\); labels and split files must be UTF-8"):
    split_files.read_v1_labels(str(latin1))
  index = {"Holding something": 0}
  split = tmp_path / "train.csv"
  split.write_bytes(b"1;Holding something\r\n2;Holding something\r\n3;Hold\xffing\r\n")
  with pytest.raises(ValueError, match=r"train\.csv:3: not UTF-8 text \(byte 0xff"):
    split_files.read_v1_split(str(split), index, True)
  js = tmp_path / "labels.json"
  js.write_bytes('{"Holding something": "0",\n "Caf\u00e9": "1"}'.encode("cp1252"))
  with pytest.raises(ValueError, match=r"labels\.json:2: not UTF-8 text"):
    split_files.read_v2_labels(str(js))
  # UTF-8 with a BOM and CRLF / CR line ends still reads.
  ok = tmp_path / "ok.csv"
  ok.write_bytes("\ufeffa\r\nb\rc\u00e9\n".encode("utf-8"))
  assert split_files.read_v1_labels(str(ok)) == ["a", "b", "c\u00e9"]


def test_v1_original_reencodes_a_png_named_jpg_and_names_it(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  manual = tmp_path / "manual"
  ft.write_v1_tree(str(manual), {"train": [ft.FakeVideo("1", NAMES[1], 3, 40, 48),
                                           ft.FakeVideo("2", NAMES[2], 3, 40, 48)],
                                 "validation": [ft.FakeVideo("3", NAMES[3], 3, 40, 48)],
                                 "test": []})
  png = manual / "20bn-something-something-v1" / "2" / "00002.jpg"
  pixels = np.asarray(Image.open(png))
  Image.fromarray(pixels).save(png, format="PNG")      # a PNG renamed .jpg
  assert png.read_bytes().startswith(b"\x89PNG")
  builder = ft.prepare(SomethingSomethingV1, str(manual), str(tmp_path / "data"),
                       config="original")
  stored = smt_input.ExampleSource(builder, "train")
  by_id = {e["video_id"]: e for e in (stored[i] for i in range(len(stored)))}
  assert sorted(by_id) == ["1", "2"] and by_id["2"]["label"] == 2    # kept
  frame = by_id["2"]["frames"][1]
  assert frame_io.image_format(frame) == "JPEG"
  decoded = tf.io.decode_and_crop_jpeg(frame, [0, 0, 40, 48], channels=3).numpy()
  assert np.abs(decoded.astype(int) - pixels).mean() < 4    # the same picture
  assert by_id["2"]["frames"][0] == (png.parent / "00001.jpg").read_bytes()  # JPEGs untouched
  note = builder.info.metadata["bad_input"]["splits"]["train"]["non_jpeg_frame"]
  assert note["count"] == 1 and note["video_ids"] == ["2"]
  assert note["details"] == [f"{png}: PNG data in a JPEG-named file, re-encoded as JPEG"]
  assert builder.info.metadata["bad_input"]["splits"]["validation"]["non_jpeg_frame"][
      "count"] == 0


def test_v1_gaps_in_frame_numbering_are_counted_and_warned_naming_the_folder(
    tmp_path, caplog):
  import logging  # pylint: disable=g-import-not-at-top
  manual = tmp_path / "manual"
  ft.write_v1_tree(str(manual), {"train": [ft.FakeVideo("1", NAMES[1], 4, 40, 48),
                                           ft.FakeVideo("2", NAMES[2], 8, 40, 48)],
                                 "validation": [ft.FakeVideo("3", NAMES[3], 3, 40, 48)],
                                 "test": []})
  frames = manual / "20bn-something-something-v1"
  (frames / "1" / "00003.jpg").unlink()                       # 00001, 00002, 00004
  for t in (1, 5, 6):
    (frames / "2" / f"{t:05d}.jpg").unlink()
  with caplog.at_level(logging.WARNING):
    builder = ft.prepare(SomethingSomethingV1, str(manual), str(tmp_path / "data"),
                         config=SMALL)
  gaps = builder.info.metadata["bad_input"]["splits"]["train"]["frame_number_gap"]
  assert gaps["count"] == 2 and gaps["video_ids"] == ["1", "2"]
  assert gaps["details"] == [
      f"{frames / '1'}: 1 frame number(s) missing (3) among 3 frames (a partial download?)",
      f"{frames / '2'}: 3 frame number(s) missing (1, 5-6) among 5 frames (a partial "
      "download?)"]
  assert builder.info.metadata["bad_input"]["splits"]["validation"]["frame_number_gap"][
      "count"] == 0
  warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any(str(frames / "1") in m and "missing (3)" in m for m in warned), warned
  got = _examples(builder, "train")
  assert got["1"]["num_frames"] == 3 and got["2"]["num_frames"] == 5   # kept as present
  assert frame_io.frame_number_gaps(["a/00000.jpg", "a/00001.jpg"]) == []
  assert frame_io.frame_number_gaps(["a/img_0002.jpg", "a/img_0004.jpg"]) == [1, 3]
  assert frame_io.frame_number_gaps(["a/first.jpg", "a/00002.jpg"]) == []
