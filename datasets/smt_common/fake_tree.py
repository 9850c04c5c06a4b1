"""Writers of tiny Something-Something trees in the official on-disk layout.

Used by the tests and `experiments/bench_input.py`; also handy to try a
pipeline before the real 20BN download arrives. Class names are the real 174
v1 names (alphabetical order stands in for the labels-file order).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from rstg_datasets.smt_common import class_names


@dataclasses.dataclass(frozen=True)
class FakeVideo:
  video_id: str
  class_name: str | None  # None for the unlabelled test split
  num_frames: int
  height: int = 100
  width: int = 132


def fake_class_names() -> list[str]:
  return sorted(class_names.checkpoint_class_names())


def random_frames(video: FakeVideo, seed: int) -> np.ndarray:
  """uint8 [num_frames, height, width, 3]: smooth noise, cheap to JPEG-encode."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (video.num_frames, max(video.height // 8, 1),
                                max(video.width // 8, 1), 3), dtype=np.uint8)
  return np.stack([np.asarray(Image.fromarray(f).resize((video.width, video.height),
                                                        Image.Resampling.BILINEAR))
                   for f in small])


def write_v1_tree(root: str, splits: Mapping[str, Sequence[FakeVideo]],
                  names: Sequence[str] | None = None, seed: int = 0,
                  jpeg_quality: int = 90) -> list[str]:
  """Writes frame folders and the v1 CSV files; returns the class names."""
  names = list(names or fake_class_names())
  frames_root = os.path.join(root, "20bn-something-something-v1")
  os.makedirs(frames_root, exist_ok=True)
  with open(os.path.join(root, "something-something-v1-labels.csv"), "w") as f:
    f.write("\n".join(names) + "\n")
  for split, videos in splits.items():
    lines = []
    for k, video in enumerate(videos):
      folder = os.path.join(frames_root, video.video_id)
      os.makedirs(folder, exist_ok=True)
      # crc32, not hash(): str hashes change from run to run.
      frames = random_frames(video, seed * 100_003 + zlib.crc32(video.video_id.encode()) + k)
      for t, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, f"{t + 1:05d}.jpg"), quality=jpeg_quality)
      lines.append(video.video_id if video.class_name is None
                   else f"{video.video_id};{video.class_name}")
    with open(os.path.join(root, f"something-something-v1-{split}.csv"), "w") as f:
      f.write("\n".join(lines) + ("\n" if lines else ""))
  return names


def write_webm(path: str, frames: np.ndarray, fps: int = 12) -> None:
  """Encodes uint8 [N, H, W, 3] frames as VP9 webm with ffmpeg."""
  n, h, w, _ = frames.shape
  subprocess.run(
      ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
       "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libvpx-vp9",
       "-pix_fmt", "yuv420p", "-deadline", "realtime", "-b:v", "200k", path],
      input=frames.tobytes(), check=True, capture_output=True)


def write_v2_tree(root: str, splits: Mapping[str, Sequence[FakeVideo]],
                  names: Sequence[str] | None = None, seed: int = 0) -> list[str]:
  """Writes webm videos (needs ffmpeg) and the v2 JSON files; returns the names."""
  names = list(names or fake_class_names())
  videos_root = os.path.join(root, "20bn-something-something-v2")
  os.makedirs(videos_root, exist_ok=True)
  with open(os.path.join(root, "something-something-v2-labels.json"), "w") as f:
    json.dump({name: str(i) for i, name in enumerate(names)}, f)
  for split, videos in splits.items():
    items = []
    for k, video in enumerate(videos):
      write_webm(os.path.join(videos_root, video.video_id + ".webm"),
                 random_frames(video, seed * 100_003 + k))
      if video.class_name is None:
        items.append({"id": video.video_id})
      else:
        # Templates bracket the placeholders; the first "something" is enough.
        template = video.class_name.replace("something", "[something]", 1)
        items.append({"id": video.video_id, "label": video.class_name.lower(),
                      "template": template, "placeholders": ["a thing"]})
    with open(os.path.join(root, f"something-something-v2-{split}.json"), "w") as f:
      json.dump(items, f)
  return names


def prepare(builder_cls, manual_dir: str, data_dir: str, config="short256", **builder_kwargs):
  """Builds `builder_cls` from `manual_dir` into `data_dir`; returns the builder."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = builder_cls(data_dir=data_dir, config=config, **builder_kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder
