"""Something-Something v2 as a tfds data set, built from the official webm files.

The videos are decoded with the `ffmpeg` program (Debian/Ubuntu:
`apt-get install -y ffmpeg`), and stored one JPEG per frame like v1, so that
training decodes only the frames it samples. 174 classes; the test split is
unlabelled (label -1). Label ids are those of the official labels JSON; the
class of a video is its annotation's template without brackets.

Bad-input policy (`rstg_datasets.smt_common.bad_input`):
- errors (naming file and entry): a class not in the labels file, a duplicated
  video id (within or across split files), a malformed entry, a labels file
  with duplicated names/ids, gaps in the ids, or not 174 classes;
- skipped and counted (errors with `strict=True`): a listed video whose webm
  file is missing or empty (`missing_video`), or that ffmpeg cannot decode
  (`unreadable_video`);
- counted only: webm files that no split file lists (`not_in_any_split`).
Counts are logged and stored in `builder.info.metadata["bad_input"]`.
"""
from __future__ import annotations

import os

import tensorflow_datasets as tfds

from rstg_datasets.smt_common import builder_base
from rstg_datasets.smt_common import frame_io
from rstg_datasets.smt_common import split_files

VIDEOS_DIR = "20bn-something-something-v2"
LABELS_FILE = "something-something-v2-labels.json"
SPLIT_FILE = "something-something-v2-{split}.json"
VIDEO_EXTENSION = ".webm"


class SomethingSomethingV2(builder_base.SomethingSomethingBase):
  """Something-Something v2: 174 classes of hand-object interactions (webm)."""

  LABELS_FILE = LABELS_FILE
  SPLIT_FILE = SPLIT_FILE
  READ_LABELS = staticmethod(split_files.read_v2_labels)
  READ_SPLIT = staticmethod(split_files.read_v2_split)

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Decoded with ffmpeg, one JPEG per frame."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download Something-Something v2 from the 20BN / Qualcomm site and place in
  `manual_dir` (default `<data_dir>/downloads/manual/`):

    {VIDEOS_DIR}/<video_id>.webm        (the extracted videos)
    {LABELS_FILE}       {{"<class name>": "<id>", ...}}
    {SPLIT_FILE.format(split='train')}        [{{"id", "label", "template", "placeholders"}}, ...]
    {SPLIT_FILE.format(split='validation')}   same format
    {SPLIT_FILE.format(split='test')}         [{{"id"}}, ...]

  The videos come as split archives
  (`20bn-something-something-v2-??`): `cat 20bn-something-something-v2-?? | tar zx`.
  Decoding needs the `ffmpeg` and `ffprobe` programs on PATH
  (Debian/Ubuntu: `apt-get install -y ffmpeg`).
  """

  def _videos_on_disk(self, root: str) -> set[str]:
    videos_root = os.path.join(root, VIDEOS_DIR)
    if not os.path.isdir(videos_root):
      raise FileNotFoundError(f"Missing folder {videos_root} (see "
                              "MANUAL_DOWNLOAD_INSTRUCTIONS)")
    if not frame_io.ffmpeg_available():
      raise RuntimeError("Building something_something_v2 needs the `ffmpeg` and "
                         "`ffprobe` programs (Debian/Ubuntu: `apt-get install -y ffmpeg`)")
    with os.scandir(videos_root) as it:
      return {e.name[:-len(VIDEO_EXTENSION)] for e in it
              if e.is_file() and e.name.endswith(VIDEO_EXTENSION)}

  def _load_video(self, root: str, video_id: str) -> frame_io.EncodedVideo:
    frames = frame_io.decode_video_file(
        os.path.join(root, VIDEOS_DIR, video_id + VIDEO_EXTENSION))
    return frame_io.encode_video_frames(
        frames, self.builder_config.short_side, self.builder_config.jpeg_quality)
