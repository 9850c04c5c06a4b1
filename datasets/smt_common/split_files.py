"""Readers of the official Something-Something label and split files.

Every reader fails with an error naming the file and line (or entry) at fault;
none of them skips a line, so a label can never shift against its video.
The files must be UTF-8 (a BOM is allowed); any other encoding is an error
naming the file, line and column of the first byte that is not UTF-8.

v1 (CSV, `;`-separated):
  `something-something-v1-labels.csv`: one class name per line; line k = id k.
  `something-something-v1-{train,validation}.csv`: `<video_id>;<class name>`.
  `something-something-v1-test.csv`: `<video_id>` (unlabelled).
v2 (JSON):
  `something-something-v2-labels.json`: {class name: "id"}.
  `something-something-v2-{train,validation}.json`: [{"id", "label",
    "template", "placeholders"}]; the class is the template without its
    brackets ("Putting [something] on a surface" -> "Putting something on a
    surface").
  `something-something-v2-test.json`: [{"id"}] (unlabelled).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence

UNLABELLED = -1


@dataclasses.dataclass(frozen=True)
class SplitEntry:
  """One listed video: its id, label id (-1 when unlabelled) and origin."""
  video_id: str
  label: int
  source: str  # "<file>:<line>" or "<file>[<entry>]", for error messages.


def _check_id(video_id: str, source: str) -> str:
  video_id = video_id.strip()
  if not video_id or "/" in video_id or "\\" in video_id or video_id in (".", ".."):
    raise ValueError(f"{source}: invalid video id {video_id!r}")
  return video_id


def _check_labels(names: Sequence[str], path: str,
                  num_classes: int | None) -> list[str]:
  seen = {}
  for i, name in enumerate(names):
    if name in seen:
      raise ValueError(f"{path}: class {name!r} appears twice (ids {seen[name]} and {i})")
    seen[name] = i
  if num_classes is not None and len(names) != num_classes:
    raise ValueError(f"{path}: expected {num_classes} classes, found {len(names)}")
  return list(names)


def _read_text(path: str) -> str:
  """The file's text, decoded as UTF-8 (BOM allowed), or ValueError naming the line."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Missing file {path} (see the builder's "
                            "MANUAL_DOWNLOAD_INSTRUCTIONS)")
  with open(path, "rb") as f:
    raw = f.read()
  try:
    return raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    lineno = raw.count(b"\n", 0, e.start) + 1
    column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
    raise ValueError(
        f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
        f"{column}); labels and split files must be UTF-8 (convert it, e.g. "
        f"`iconv -f latin1 -t utf-8`)") from None


def _read_lines(path: str) -> list[str]:
  # Universal newlines, as text-mode open() reads them.
  lines = re.split(r"\r\n|\r|\n", _read_text(path))
  while lines and not lines[-1].strip():
    lines.pop()  # Trailing blank lines only; a blank line inside is an error.
  return lines


def read_v1_labels(path: str, num_classes: int | None = None) -> list[str]:
  """Class names in id order (line k = id k) of the v1 labels CSV."""
  names = []
  for lineno, line in enumerate(_read_lines(path), start=1):
    name = line.strip()
    if not name:
      raise ValueError(f"{path}:{lineno}: blank line inside the labels file "
                       "(it would shift every following class id)")
    names.append(name)
  return _check_labels(names, path, num_classes)


def read_v1_split(path: str, class_index: Mapping[str, int],
                  labelled: bool, labels_path: str = "the labels file") -> list[SplitEntry]:
  """Entries of a v1 split CSV (`id;class` lines, or `id` lines if unlabelled)."""
  entries = []
  for lineno, line in enumerate(_read_lines(path), start=1):
    source = f"{path}:{lineno}"
    fields = line.split(";", 1)
    video_id = _check_id(fields[0], source)
    if not labelled:
      if len(fields) > 1:
        raise ValueError(f"{source}: the test split is unlabelled but the line "
                         f"has a second field: {line!r}")
      entries.append(SplitEntry(video_id, UNLABELLED, source))
      continue
    if len(fields) != 2 or not fields[1].strip():
      raise ValueError(f"{source}: expected '<video_id>;<class name>', got {line!r}")
    name = fields[1].strip()
    if name not in class_index:
      raise ValueError(f"{source}: class {name!r} of video {video_id} is not in "
                       f"{labels_path}")
    entries.append(SplitEntry(video_id, class_index[name], source))
  return entries


def _read_json(path: str):
  text = _read_text(path)
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON: {e}") from e


def read_v2_labels(path: str, num_classes: int | None = None) -> list[str]:
  """Class names in id order from the v2 labels JSON ({name: "id"})."""
  data = _read_json(path)
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a JSON object {{class name: id}}")
  by_id = {}
  for name, raw_id in data.items():
    try:
      label_id = int(raw_id)
    except (TypeError, ValueError):
      raise ValueError(f"{path}: class {name!r} has a non-integer id {raw_id!r}") from None
    if label_id in by_id:
      raise ValueError(f"{path}: id {label_id} is given to both {by_id[label_id]!r} "
                       f"and {name!r}")
    by_id[label_id] = name.strip()
  if sorted(by_id) != list(range(len(by_id))):
    raise ValueError(f"{path}: class ids are not 0..{len(by_id) - 1} without gaps")
  return _check_labels([by_id[i] for i in range(len(by_id))], path, num_classes)


def v2_class_name(template: str) -> str:
  """The v2 class of an annotation: its template without brackets."""
  return template.replace("[", "").replace("]", "").strip()


def read_v2_split(path: str, class_index: Mapping[str, int],
                  labelled: bool, labels_path: str = "the labels file") -> list[SplitEntry]:
  """Entries of a v2 split JSON (a list of {"id", "template", ...})."""
  data = _read_json(path)
  if not isinstance(data, list):
    raise ValueError(f"{path}: expected a JSON list of annotations")
  entries = []
  for k, item in enumerate(data):
    source = f"{path}[{k}]"
    if not isinstance(item, dict) or "id" not in item:
      raise ValueError(f"{source}: expected an object with an 'id', got {item!r}")
    video_id = _check_id(str(item["id"]), source)
    if not labelled:
      entries.append(SplitEntry(video_id, UNLABELLED, source))
      continue
    if "template" not in item:
      raise ValueError(f"{source}: video {video_id} has no 'template' (its class)")
    name = v2_class_name(str(item["template"]))
    if name not in class_index:
      raise ValueError(f"{source}: class {name!r} (template {item['template']!r}) "
                       f"of video {video_id} is not in {labels_path}")
    entries.append(SplitEntry(video_id, class_index[name], source))
  return entries


def check_unique_ids(splits: Mapping[str, Sequence[SplitEntry]]) -> None:
  """Raises if a video id is listed twice, within a split or across splits."""
  first: dict[str, str] = {}
  for entries in splits.values():
    for entry in entries:
      if entry.video_id in first:
        raise ValueError(f"video id {entry.video_id} is listed twice: at "
                         f"{first[entry.video_id]} and at {entry.source}")
      first[entry.video_id] = entry.source
