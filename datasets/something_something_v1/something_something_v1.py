"""Something-Something v1 as a tfds data set, built from the official frames.

Manual download (see MANUAL_DOWNLOAD_INSTRUCTIONS). 174 classes; the test
split is unlabelled (label -1). Label ids follow the line order of the official
labels CSV; `rstg_datasets.smt_common.class_names.checkpoint_rows_for_labels`
maps them to the class order of the original RSTG checkpoints.

Bad-input policy (`rstg_datasets.smt_common.bad_input`):
- errors (naming file and line): a class name not in the labels file, a
  duplicated video id (within or across split files), a malformed line, a
  labels file with duplicated names or not 174 classes;
- skipped and counted (errors with `strict=True`): a listed video whose frame
  folder is missing or empty (`missing_video`), a listed video with an
  unreadable JPEG or frames of different sizes (`unreadable_video`);
- counted only: frame folders that no split file lists (`not_in_any_split`);
- kept, counted and named (a warning per file): a frame file whose bytes are
  not JPEG, e.g. a PNG renamed `.jpg` (`non_jpeg_frame`; re-encoded as JPEG,
  also under the `original` config); gaps in a folder's frame numbering
  (`frame_number_gap`, a partial download looks like this; the frames present
  are kept).
Counts are logged and stored in `builder.info.metadata["bad_input"]`.

Usage:
  import rstg_datasets.something_something_v1  # registers the builder
  builder = tfds.builder("something_something_v1/short256", data_dir=DATA_DIR)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=MANUAL_DIR))
"""
from __future__ import annotations

import os

import tensorflow_datasets as tfds

from rstg_datasets.smt_common import builder_base
from rstg_datasets.smt_common import frame_io
from rstg_datasets.smt_common import split_files

FRAMES_DIR = "20bn-something-something-v1"
LABELS_FILE = "something-something-v1-labels.csv"
SPLIT_FILE = "something-something-v1-{split}.csv"


class SomethingSomethingV1(builder_base.SomethingSomethingBase):
  """Something-Something v1: 174 classes of hand-object interactions (frames)."""

  LABELS_FILE = LABELS_FILE
  SPLIT_FILE = SPLIT_FILE
  READ_LABELS = staticmethod(split_files.read_v1_labels)
  READ_SPLIT = staticmethod(split_files.read_v1_split)

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "One JPEG per frame; short-side-256 and original configs."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download Something-Something v1 from the 20BN / Qualcomm site and place in
  `manual_dir` (default `<data_dir>/downloads/manual/`):

    {FRAMES_DIR}/<video_id>/00001.jpg, 00002.jpg, ...   (the extracted frame folders)
    {LABELS_FILE}          one class name per line
    {SPLIT_FILE.format(split='train')}           <video_id>;<class name> per line
    {SPLIT_FILE.format(split='validation')}      <video_id>;<class name> per line
    {SPLIT_FILE.format(split='test')}            <video_id> per line

  The frame folders come as split archives
  (`20bn-something-something-v1-??`): `cat 20bn-something-something-v1-?? | tar zx`.
  """

  def _videos_on_disk(self, root: str) -> set[str]:
    frames_root = os.path.join(root, FRAMES_DIR)
    if not os.path.isdir(frames_root):
      raise FileNotFoundError(f"Missing folder {frames_root} (see "
                              "MANUAL_DOWNLOAD_INSTRUCTIONS)")
    with os.scandir(frames_root) as it:
      return {e.name for e in it if e.is_dir()}

  def _load_video(self, root: str, video_id: str) -> frame_io.EncodedVideo:
    return frame_io.read_frame_folder(
        os.path.join(root, FRAMES_DIR, video_id), self.builder_config.short_side,
        self.builder_config.jpeg_quality)
