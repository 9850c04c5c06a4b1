"""The tfds builder logic shared by Something-Something v1 and v2.

Stored features (per video):
  video_id    Text        the official id (the example key too)
  frames      Sequence(Image jpeg) [num_frames] one JPEG per frame, in time order
  num_frames  int32       number of frames
  height, width int32     size of the stored frames
  label       ClassLabel(174)  id in the official labels-file order; -1 (test)

Stored as ArrayRecord by default (`download_and_prepare(file_format=...)`
takes another), so examples can be read by index
(`builder.as_data_source(split)`): the training input (`rstg_jax.data.smt_input`)
reads the examples of any step directly, which makes resuming exact and cheap,
and decodes only the sampled frames of each video.

Builder configs: `short256` (default; frames resized, bicubic, so the short side
is 256 and re-encoded as JPEG, spec §10.2) and `original` (original frame size;
v1 keeps the original JPEG bytes untouched).

Builder keyword arguments (they do not change the stored data, so they are
not configs): `strict=True` turns every skip of the bad-input policy
(`rstg_datasets.smt_common.bad_input`) into an error naming the file;
`num_workers` sets the decoding threads (default: all cores).
"""
from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from rstg_datasets.smt_common import bad_input
from rstg_datasets.smt_common import split_files
from rstg_datasets.smt_common.frame_io import EncodedVideo
from rstg_datasets.smt_common.ordered_map import ordered_thread_map

NUM_CLASSES = 174  # spec §9.4
SPLITS = ("train", "validation", "test")
LABELLED_SPLITS = ("train", "validation")


@dataclasses.dataclass
class SmtConfig(tfds.core.BuilderConfig):
  """Stored resolution: `short_side` pixels on the short side, or None (original)."""
  short_side: int | None = 256
  jpeg_quality: int = 90


BUILDER_CONFIGS = [
    SmtConfig(name="short256", short_side=256, jpeg_quality=90,
              description="Frames resized (bicubic) to short side 256, JPEG quality 90."),
    SmtConfig(name="original", short_side=None, jpeg_quality=90,
              description="Frames at their original size."),
]


class SomethingSomethingBase(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Common generation loop; subclasses read their own files and videos."""

  BUILDER_CONFIGS = BUILDER_CONFIGS
  DEFAULT_CONFIG_NAME = "short256"

  def __init__(self, *, strict: bool = False, num_workers: int | None = None, **kwargs):
    self._strict = bool(strict)
    self._num_workers = num_workers or os.cpu_count() or 1
    super().__init__(**kwargs)

  def download_and_prepare(self, *, file_format=None, **kwargs):  # pylint: disable=arguments-differ
    """As tfds', but writes ArrayRecord unless `file_format` says otherwise."""
    super().download_and_prepare(file_format=file_format or "array_record", **kwargs)

  # ---- what each version provides -------------------------------------------------

  # File names inside the manual folder, and the readers of their format
  # (`split_files.read_v1_*` for CSV, `read_v2_*` for JSON).
  LABELS_FILE: str
  SPLIT_FILE: str  # with a `{split}` field
  READ_LABELS: Callable[..., list[str]]
  READ_SPLIT: Callable[..., list[split_files.SplitEntry]]

  def _read_labels(self, root: str) -> list[str]:
    """Class names in label-id order."""
    return type(self).READ_LABELS(os.path.join(root, self.LABELS_FILE),
                                  num_classes=NUM_CLASSES)

  def _read_splits(self, root: str,
                   class_index: Mapping[str, int]) -> dict[str, list[split_files.SplitEntry]]:
    """Entries of every split."""
    labels_path = os.path.join(root, self.LABELS_FILE)
    return {
        split: type(self).READ_SPLIT(
            os.path.join(root, self.SPLIT_FILE.format(split=split)), class_index,
            labelled=split in LABELLED_SPLITS, labels_path=labels_path)
        for split in SPLITS
    }

  @abc.abstractmethod
  def _videos_on_disk(self, root: str) -> set[str]:
    """Ids of every video present in the data folder."""

  @abc.abstractmethod
  def _load_video(self, root: str, video_id: str) -> EncodedVideo:
    """Encoded frames of one video; raises BadVideoError for bad input."""

  # ---- shared ------------------------------------------------------------------------

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "video_id": tfds.features.Text(),
            "frames": tfds.features.Sequence(
                tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")),
            "num_frames": tfds.features.Scalar(np.int32),
            "height": tfds.features.Scalar(np.int32),
            "width": tfds.features.Scalar(np.int32),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        homepage="https://developer.qualcomm.com/software/ai-datasets/something-something",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = os.fspath(dl_manager.manual_dir)
    names = self._read_labels(root)
    # Names come from the user's labels file, so they are set here, not in _info.
    self.info.features["label"].names = names
    class_index = {name: i for i, name in enumerate(names)}
    splits = self._read_splits(root, class_index)
    split_files.check_unique_ids(splits)
    empty = [split for split, entries in splits.items() if not entries]
    if empty:
      logging.warning("Something-Something: split files of %s list no video; those "
                      "splits are left out.", empty)
    splits = {split: entries for split, entries in splits.items() if entries}
    listed = {e.video_id for entries in splits.values() for e in entries}
    unlisted = sorted(self._videos_on_disk(root) - listed)
    self.info.metadata["bad_input"] = {
        "policy": "skip (strict=False)" if not self._strict else "error (strict=True)",
        "not_in_any_split": {"count": len(unlisted),
                             "video_ids": unlisted[:bad_input.MAX_IDS_REPORTED]},
        "splits": {},
    }
    report = bad_input.BadInputReport()
    return {split: self._generate_examples(root, split, entries, report)
            for split, entries in splits.items()}

  def _load_or_error(self, root: str, video_id: str) -> EncodedVideo | bad_input.BadVideoError:
    try:
      return self._load_video(root, video_id)
    except bad_input.BadVideoError as e:
      return e

  def _generate_examples(self, root: str, split: str,
                         entries: Sequence[split_files.SplitEntry],
                         report: bad_input.BadInputReport) -> Iterator[tuple[str, dict[str, Any]]]:
    num_written = 0
    for entry, video in ordered_thread_map(
        lambda e: self._load_or_error(root, e.video_id), entries, self._num_workers):
      if isinstance(video, bad_input.BadVideoError):
        if self._strict:
          raise ValueError(f"strict=True: video {entry.video_id} (listed at "
                           f"{entry.source}) is bad: {video}") from video
        report.add(split, entry.video_id, video)
        continue
      for reason, detail in video.notes:
        report.note(split, entry.video_id, reason, detail)
      num_written += 1
      yield entry.video_id, {
          "video_id": entry.video_id,
          "frames": video.frames,
          "num_frames": len(video.frames),
          "height": video.height,
          "width": video.width,
          "label": entry.label,
      }
    report.log_split(split, num_written)
    if not num_written:
      raise ValueError(f"split {split!r}: none of its {len(entries)} videos could be read "
                       f"(first listed at {entries[0].source}); "
                       f"{report.split_summary(split)}")
    self.info.metadata["bad_input"]["splits"][split] = report.split_summary(split)


def bad_input_summary(builder: tfds.core.DatasetBuilder) -> dict[str, Any]:
  """The bad-input report stored at build time (counts and first ids)."""
  return dict(builder.info.metadata.get("bad_input", {}))
