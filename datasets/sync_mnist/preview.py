"""A PNG grid of SyncMNIST videos: one row per video, one column per frame.

    python -m rstg_datasets.sync_mnist.preview --config=digits3_tiny \
        --data_dir=/tmp/tfds --out=/tmp/sync_mnist_preview.png

Builds the config if it is missing. Each row is titled with the label, the
digit classes (synchronous pair first) and the video id; the two labelled
digits get coloured boxes (their stored coords scaled to 64x64) so that one can
see them move together, and the other digits get grey boxes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
import itertools

from absl import app
from absl import flags
# A bare Figure (no pyplot) renders off-screen without touching the user's backend.
from matplotlib import patches
from matplotlib.figure import Figure
import numpy as np
import tensorflow_datasets as tfds

from rstg_datasets.sync_mnist import build
from rstg_datasets.sync_mnist import generator
from rstg_datasets.sync_mnist import pair_labels
from rstg_datasets.sync_mnist.digit_pool import DIGIT_SIZE

_PAIR_COLOURS = ("tab:red", "tab:orange")


def displayable(frame: np.ndarray) -> np.ndarray:
  """A stored frame [H, W, C] as imshow shows it: grey [H, W] for C = 1, RGB
  for C = 3 (a channel-per-class build of three classes: one colour per class),
  else the brightest channel in grey."""
  if frame.shape[-1] == 3:
    return frame
  return frame.max(axis=-1)


def write_preview(examples: Iterable[Mapping[str, np.ndarray]], path: str,
                  boxes: bool = True) -> None:
  """Writes the grid PNG of `examples` (dicts with the builder's feature keys)."""
  examples = list(examples)
  if not examples:
    raise ValueError("write_preview needs at least one example")
  names = pair_labels.label_names()
  num_frames = examples[0]["video"].shape[0]
  rows = len(examples)
  fig = Figure(figsize=(1.0 * num_frames, 1.2 * rows + 0.1))
  axes = fig.subplots(rows, num_frames, squeeze=False)
  for row, ex in enumerate(examples):
    digits = " ".join(str(d) for d in ex["digits"])
    axes[row, 0].set_title(
        f"video {int(ex['video_id'])}: label {int(ex['label'])} = {names[int(ex['label'])]}"
        f"   digits [{digits}]", loc="left", fontsize=8)
    for t in range(num_frames):
      ax = axes[row, t]
      ax.imshow(displayable(ex["video"][t]), cmap="gray", vmin=0, vmax=255)
      ax.set_xticks([])
      ax.set_yticks([])
      if not boxes:
        continue
      # Canvas coordinates -> pixels of the stored frame (64 in the paper, 32 for :cpu).
      scale = ex["video"].shape[2] / generator.CANVAS_SIZE
      for k, (r, c) in enumerate(ex["coords"][t]):
        in_pair = bool(ex["is_sync"]) and k < 2
        ax.add_patch(patches.Rectangle(
            (c * scale - 0.5, r * scale - 0.5), DIGIT_SIZE * scale, DIGIT_SIZE * scale,
            fill=False, lw=1.0 if in_pair else 0.5,
            edgecolor=_PAIR_COLOURS[k] if in_pair else "0.5"))
  # Frames fill the width; each row keeps ~0.2 inch above it for its title.
  fig.subplots_adjust(left=0.005, right=0.995, bottom=0.05 / rows,
                      top=1 - 0.2 / (1.2 * rows + 0.1), wspace=0.05, hspace=0.3)
  fig.savefig(path, dpi=110)


def main(argv):
  del argv
  flags_ = flags.FLAGS
  builder = build.build_if_missing(flags_.config, flags_.data_dir)
  ds = tfds.as_numpy(builder.as_dataset(split=flags_.split))
  examples = list(itertools.islice(ds, flags_.num_videos))
  if flags_.include_no_sync and all(ex["is_sync"] for ex in examples):
    no_sync = next((ex for ex in ds if not ex["is_sync"]), None)
    if no_sync is not None:
      examples[-1] = no_sync
  write_preview(examples, flags_.out, boxes=flags_.boxes)
  print(f"wrote {flags_.out}")


def _define_flags():
  """Flags exist only when this file runs as a script, so importing it never clashes."""
  flags.DEFINE_string("config", "digits3_tiny", "SyncMNIST config.")
  flags.DEFINE_string("data_dir", None, "tfds data dir root.", required=True)
  flags.DEFINE_string("split", "test", "Split to show.")
  flags.DEFINE_integer("num_videos", 6, "Videos (rows) to show.")
  flags.DEFINE_boolean("include_no_sync", True,
                       "Make the last row a 'no_sync' video if the split has one.")
  flags.DEFINE_string("out", "sync_mnist_preview.png", "Output PNG.")
  flags.DEFINE_boolean("boxes", True, "Draw digit boxes from the stored coords.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
