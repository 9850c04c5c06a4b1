"""Reading, resizing and JPEG-encoding the frames of one video.

Frames are stored one JPEG per frame so that training decodes only the frames
it samples (spec §10.2 stacked all frames into one JPEG, which forces a decode
of the whole clip).
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import subprocess

import numpy as np
from PIL import Image

from rstg_datasets.smt_common.bad_input import BadVideoError

FRAME_EXTENSIONS = (".jpg", ".jpeg")
FFMPEG_TIMEOUT_S = 300


@dataclasses.dataclass
class EncodedVideo:
  """JPEG bytes of every frame (all of size height x width).

  `notes`: (reason, detail) of what was odd but kept, reason one of
  bad_input.NOTE_REASONS (e.g. a PNG frame re-encoded as JPEG).
  """
  frames: list[bytes]
  height: int
  width: int
  notes: list[tuple[str, str]] = dataclasses.field(default_factory=list)


# Magic bytes of the image formats a frame file may really hold.
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def image_format(raw: bytes) -> str:
  """'JPEG', 'PNG', 'GIF', 'BMP', 'TIFF', 'WEBP' or 'unknown', from the magic bytes."""
  if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
    return "WEBP"
  for magic, name in _MAGIC:
    if raw.startswith(magic):
      return name
  return "unknown"


def resized_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
  """(height, width) with the short side `short_side`, aspect kept (spec §10.2).

  The long side is `int(long / short * short_side)` (truncated), as the
  original preprocessing computed it.
  """
  if short_side is None:
    return height, width
  if height <= width:
    return short_side, int(width / height * short_side)
  return int(height / width * short_side), short_side


def _encode(image: Image.Image, quality: int) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def _resize(image: Image.Image, short_side: int | None) -> Image.Image:
  h, w = resized_size(image.height, image.width, short_side)
  if (h, w) == (image.height, image.width):
    return image
  return image.resize((w, h), resample=Image.Resampling.BICUBIC)


def _natural_key(name: str):
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_frame_files(folder: str, extensions: tuple[str, ...] = FRAME_EXTENSIONS
                     ) -> list[str]:
  """Files of a frame folder (JPEG by default) in frame order (natural sort of the
  names)."""
  names = [n for n in os.listdir(folder) if n.lower().endswith(extensions)]
  return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def frame_number_gaps(paths: list[str]) -> list[int]:
  """Frame numbers missing from a folder's files (00001, 00002, 00004 -> [3]).

  A frame's number is the last run of digits of its file name; numbering is
  expected to run without gaps from 1 (or from 0 when a 0 is present) to the
  largest number. Names without a number: no check ([]).
  """
  numbers = set()
  for path in paths:
    runs = re.findall(r"\d+", os.path.splitext(os.path.basename(path))[0])
    if not runs:
      return []
    numbers.add(int(runs[-1]))
  if not numbers:
    return []
  first = 0 if 0 in numbers else 1
  return [n for n in range(first, max(numbers) + 1) if n not in numbers]


def _describe_gaps(missing: list[int]) -> str:
  ranges, start = [], None
  for i, n in enumerate(missing):
    if start is None:
      start = n
    if i + 1 == len(missing) or missing[i + 1] != n + 1:
      ranges.append(str(start) if start == n else f"{start}-{n}")
      start = None
  shown = ", ".join(ranges[:10]) + (", ..." if len(ranges) > 10 else "")
  return f"{len(missing)} frame number(s) missing ({shown})"


def read_frame_folder(folder: str, short_side: int | None,
                      jpeg_quality: int) -> EncodedVideo:
  """Reads a v1 frame folder; resizes and re-encodes when `short_side` is set.

  With `short_side=None` the original JPEG bytes are kept (after checking that
  they decode), so nothing is lost. A frame whose bytes are not JPEG (a PNG
  renamed `.jpg`: the format is read from the magic bytes, not the name) is
  re-encoded as JPEG, as every frame is with `short_side` set, and noted as
  `non_jpeg_frame` with its file name: stored unchanged it would fail later
  in training, inside tf.io.decode_and_crop_jpeg. Re-encoding (rather than
  skipping the video) keeps the video; the image decoded fine, only its
  container was wrong.

  Gaps in the frame numbering (00001, 00002, 00004: how a partial download
  looks) keep the video with the frames present, noted as `frame_number_gap`
  with the folder name.

  Raises:
    BadVideoError: missing/empty folder, an unreadable JPEG, or frames of
      different sizes.
  """
  if not os.path.isdir(folder):
    raise BadVideoError("missing_video", folder, "frame folder does not exist")
  paths = list_frame_files(folder)
  if not paths:
    raise BadVideoError("missing_video", folder, "frame folder has no .jpg frames")
  frames, size, notes = [], None, []
  missing = frame_number_gaps(paths)
  if missing:
    notes.append(("frame_number_gap",
                  f"{folder}: {_describe_gaps(missing)} among {len(paths)} frames "
                  "(a partial download?)"))
  for path in paths:
    try:
      with open(path, "rb") as f:
        raw = f.read()
      image = Image.open(io.BytesIO(raw))
      image.load()  # Decodes fully: truncated or corrupt files raise here.
    except Exception as e:  # PIL raises many types for corrupt data.
      raise BadVideoError("unreadable_video", path, f"cannot decode JPEG ({e})") from e
    if size is None:
      size = image.size
    elif image.size != size:
      raise BadVideoError("unreadable_video", path,
                          f"frame size {image.size} differs from the first frame's {size}")
    kind = image_format(raw)
    if kind != "JPEG":
      notes.append(("non_jpeg_frame", f"{path}: {kind} data in a JPEG-named file, "
                                      "re-encoded as JPEG"))
    if short_side is None and image.mode in ("RGB", "L") and kind == "JPEG":
      frames.append(raw)
    else:
      frames.append(_encode(_resize(image.convert("RGB"), short_side), jpeg_quality))
  height, width = resized_size(size[1], size[0], short_side)
  return EncodedVideo(frames, height, width, notes)


def ffmpeg_available() -> bool:
  return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def decode_video_file(path: str) -> np.ndarray:
  """Every frame of a video file (e.g. webm) as uint8 [N, H, W, 3], via ffmpeg.

  Raises:
    BadVideoError: missing/empty file, or ffmpeg cannot decode it.
    RuntimeError: the `ffmpeg`/`ffprobe` programs are not installed.
  """
  if not os.path.isfile(path) or os.path.getsize(path) == 0:
    raise BadVideoError("missing_video", path, "video file is missing or empty")
  if not ffmpeg_available():
    raise RuntimeError("Decoding Something-Something v2 needs the `ffmpeg` and "
                       "`ffprobe` programs (Debian/Ubuntu: `apt-get install -y ffmpeg`)")
  probe = subprocess.run(
      ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
       "stream=width,height", "-of", "csv=p=0:s=x", path],
      capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False)
  try:
    width, height = (int(v) for v in probe.stdout.strip().split("x")[:2])
  except ValueError:
    raise BadVideoError("unreadable_video", path,
                        f"ffprobe found no video stream ({probe.stderr.strip()[-300:]})") from None
  # -vsync 0 passes every decoded frame through: no duplicates, no drops.
  decode = subprocess.run(
      ["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0:v:0", "-vsync", "0",
       "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
      capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
  frame_bytes = width * height * 3
  data = decode.stdout
  if decode.returncode != 0 or not data or len(data) % frame_bytes:
    raise BadVideoError(
        "unreadable_video", path,
        f"ffmpeg failed (exit {decode.returncode}, {len(data)} bytes): "
        f"{decode.stderr.decode(errors='replace').strip()[-300:]}")
  return np.frombuffer(data, np.uint8).reshape(-1, height, width, 3)


def encode_video_frames(frames: np.ndarray, short_side: int | None,
                        jpeg_quality: int) -> EncodedVideo:
  """JPEG-encodes decoded frames [N, H, W, 3] uint8, resized if `short_side`."""
  encoded = [_encode(_resize(Image.fromarray(f), short_side), jpeg_quality)
             for f in frames]
  height, width = resized_size(frames.shape[1], frames.shape[2], short_side)
  return EncodedVideo(encoded, height, width)
