"""The bad-input policy of the Something-Something builders, and its report.

Policy (the same for v1 and v2):

| case | what happens |
|---|---|
| a class name of a split file is not in the labels file | error naming the split file, line and video id |
| a video id appears twice (in one split file or in two) | error naming both places |
| a malformed line / entry in a labels or split file | error naming the file and line |
| a labels file with duplicated names or ids | error naming the file |
| a listed video whose frame folder (v1) / webm file (v2) is missing or empty | skipped, counted as `missing_video` (error with `strict=True`) |
| a listed video with an unreadable JPEG, frames of different sizes, or a webm ffmpeg cannot decode | skipped, counted as `unreadable_video` (error with `strict=True`) |
| a video on disk that no split file lists | not in the data set, counted as `not_in_any_split` (informational) |
| a frame file whose bytes are not JPEG (e.g. a PNG renamed `.jpg`; format read from the magic bytes) | kept, re-encoded as JPEG, counted as `non_jpeg_frame` (one per frame) with the file name |
| gaps in a frame folder's numbering (00001, 00002, 00004: how a partial download looks) | kept with the frames present, counted as `frame_number_gap` (one per video) with the folder name |

A skip drops the whole video, label included, so labels can never shift
against videos. Counts and the first ids of each kind are logged at the end of
every split and stored in `builder.info.metadata["bad_input"]`; the kept-but-
noted cases (NOTE_REASONS) are also logged as warnings naming the file or
folder as they are met (the first MAX_WARNINGS of each kind).
"""
from __future__ import annotations

import collections
from typing import Any

from absl import logging

SKIP_REASONS = ("missing_video", "unreadable_video")
# Odd input that is kept (the video is written), but counted and named.
NOTE_REASONS = ("non_jpeg_frame", "frame_number_gap")
MAX_IDS_REPORTED = 50
MAX_WARNINGS = 20


class BadVideoError(Exception):
  """A listed video that cannot be read; `reason` is one of SKIP_REASONS."""

  def __init__(self, reason: str, path: str, detail: str):
    if reason not in SKIP_REASONS:
      raise ValueError(f"unknown bad-video reason {reason!r}")
    self.reason = reason
    self.path = path
    self.detail = detail
    super().__init__(f"{reason}: {path}: {detail}")


class BadInputReport:
  """Counts of skipped videos per split and reason, with the first ids."""

  def __init__(self):
    self._counts: dict[str, collections.Counter] = collections.defaultdict(
        collections.Counter)
    self._ids: dict[str, dict[str, list[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    self._details: dict[str, dict[str, list[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))

  def add(self, split: str, video_id: str, error: BadVideoError) -> None:
    self._counts[split][error.reason] += 1
    if len(self._ids[split][error.reason]) < MAX_IDS_REPORTED:
      self._ids[split][error.reason].append(video_id)
      self._details[split][error.reason].append(str(error))

  def note(self, split: str, video_id: str, reason: str, detail: str) -> None:
    """Counts one kept-but-odd input (reason in NOTE_REASONS), warning with `detail`."""
    if reason not in NOTE_REASONS:
      raise ValueError(f"unknown bad-input note {reason!r}")
    self._counts[split][reason] += 1
    if self._counts[split][reason] <= MAX_WARNINGS:
      logging.warning("Something-Something split %r, video %s: %s", split, video_id, detail)
    ids = self._ids[split][reason]
    if len(ids) < MAX_IDS_REPORTED and video_id not in ids:
      ids.append(video_id)
    if len(self._details[split][reason]) < MAX_IDS_REPORTED:
      self._details[split][reason].append(detail)

  def count(self, split: str, reason: str) -> int:
    return self._counts[split][reason]

  def split_summary(self, split: str) -> dict[str, Any]:
    out = {
        reason: {
            "count": self._counts[split][reason],
            "video_ids": list(self._ids[split][reason]),
            "first_errors": list(self._details[split][reason][:5]),
        } for reason in SKIP_REASONS
    }
    out.update({
        reason: {
            "count": self._counts[split][reason],
            "video_ids": list(self._ids[split][reason]),
            "details": list(self._details[split][reason]),
        } for reason in NOTE_REASONS
    })
    return out

  def log_split(self, split: str, num_written: int) -> None:
    noted = {r: self._counts[split][r] for r in NOTE_REASONS if self._counts[split][r]}
    if noted:
      logging.warning("Something-Something split %r: kept with notes: %s (see "
                      "builder.info.metadata['bad_input'])", split,
                      ", ".join(f"{r}={n}" for r, n in noted.items()))
    total = sum(self._counts[split][r] for r in SKIP_REASONS)
    if total:
      logging.warning(
          "Something-Something split %r: wrote %d videos, skipped %d (%s). "
          "First errors: %s", split, num_written, total,
          ", ".join(f"{r}={self._counts[split][r]}" for r in SKIP_REASONS),
          "; ".join(sum((self._details[split][r][:3] for r in SKIP_REASONS), [])))
    else:
      logging.info("Something-Something split %r: wrote %d videos, none skipped.",
                   split, num_written)
