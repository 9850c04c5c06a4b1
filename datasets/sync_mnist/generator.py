"""SyncMNIST video generation in pure numpy (spec §10.1, "front" digits, no noise parts).

One video = `num_digits` digits of distinct classes doing random walks on a black
100x100 canvas for 10 frames; in a synchronous video (probability 91/92) the
first two digits share every displacement, and the label is the class id of
their unordered pair. Frames are down-sampled to 64x64 like the original.

All randomness of a video comes from `video_rng(seed, split, index)`, so video
`index` is the same whichever process (or how many processes) renders it.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from rstg_datasets.sync_mnist import legacy_imresize
from rstg_datasets.sync_mnist import pair_labels
from rstg_datasets.sync_mnist.digit_pool import DIGIT_SIZE
from rstg_datasets.sync_mnist.digit_pool import DigitPool

NUM_FRAMES = 10
CANVAS_SIZE = 100
OUTPUT_SIZE = 64
# Top-left positions (row, col) lie in {0..MAX_POS}; initial ones are drawn
# from range(CANVAS_SIZE - DIGIT_SIZE) = {0..71}.
MAX_POS = CANVAS_SIZE - DIGIT_SIZE - 1  # 71
MAX_STEP = 10
# A digit pixel replaces the canvas only where it is at least this bright.
DRAW_THRESHOLD = 10
# The original draws "random" with probability 1 / (len(pair dict) + 1), where the
# dict holds both orders of the 45 pairs plus the random key: 1/92, not 1/46.
NO_SYNC_PROB = 1.0 / 92.0
SPLIT_IDS = {"train": 0, "test": 1}


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  """Every random choice of one video (what the original's predefined paths store).

  Attributes:
    digits: int32 [n], digit classes, all distinct; the synchronous pair first.
    digit_indices: int32 [n], index of each digit's image in the split's pool.
    coords: int32 [T, n, 2], per-frame top-left (row, col) in the 100x100 canvas,
      after that frame's move.
    is_sync: whether digits 0 and 1 move together.
    label: pair class id of digits 0 and 1 if synchronous, else 45.
  """
  digits: np.ndarray
  digit_indices: np.ndarray
  coords: np.ndarray
  is_sync: bool
  label: int


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of video `index` of `split`: independent of any other video.

  Identical bytes need the same numpy version too: numpy keeps its Generator
  streams stable in practice but does not promise it across releases.
  """
  if split not in SPLIT_IDS:
    raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
  return np.random.default_rng([int(seed), SPLIT_IDS[split], int(index)])


def random_walk(num_digits: int, is_sync: bool, rng: np.random.Generator,
                num_frames: int = NUM_FRAMES, max_step: int = MAX_STEP) -> np.ndarray:
  """Per-frame top-left positions of `num_digits` digits.

  The move is applied before every frame is drawn, frame 0 included. Each digit
  and axis draws an integer step uniformly from [low, high) with
  low = clip(-pos, -max_step, max_step) and high = clip(71 - pos, -max_step,
  max_step) (max_step 10 in the paper); with `is_sync`,
  digits 0 and 1 instead share one step per axis drawn from the intersection of
  their two ranges (no move on an axis whose intersection is empty), so their
  offset never changes.

  Returns:
    int32 [num_frames, num_digits, 2] (row, col).
  """
  pos = rng.integers(0, MAX_POS + 1, size=(num_digits, 2)).tolist()
  # Uniform integers in [low, high) as low + floor(u * (high - low)), with all
  # u drawn up front. The walk itself runs on Python ints: with ~100 scalar
  # updates per video, numpy's per-call overhead would dominate.
  u_digit = rng.random((num_frames, num_digits, 2)).tolist()
  u_pair = rng.random((num_frames, 2)).tolist()
  coords = np.empty((num_frames, num_digits, 2), dtype=np.int32)
  for t in range(num_frames):
    low = [[max(-p, -max_step) for p in xy] for xy in pos]
    high = [[min(MAX_POS - p, max_step) for p in xy] for xy in pos]
    step = [[lo + math.floor(u * (hi - lo)) for lo, hi, u in zip(los, his, us)]
            for los, his, us in zip(low, high, u_digit[t])]
    if is_sync:
      for axis in range(2):
        pair_low = max(low[0][axis], low[1][axis])
        # Ranges always contain 0, so an empty intersection is [0, 0): a width
        # of 0 then gives the "no move" of the original.
        width = max(min(high[0][axis], high[1][axis]) - pair_low, 0)
        step[0][axis] = step[1][axis] = pair_low + math.floor(u_pair[t][axis] * width)
    pos = [[min(max(p + d, 0), MAX_POS) for p, d in zip(xy, dxy)]
           for xy, dxy in zip(pos, step)]
    coords[t] = pos
  return coords


def sample_video_spec(pool: DigitPool, index: int, num_digits: int,
                      rng: np.random.Generator,
                      digit_classes: tuple[int, ...] = (),
                      max_step: int = MAX_STEP) -> VideoSpec:
  """Draws digits, synchrony and motion of video `index` (spec §10.1 steps 1-5).

  The first digit is pool image `index % len(pool)` (so a split of k * len(pool)
  videos uses every pool image k times as first digit); the others have distinct
  classes different from it, each a random image of its class from the pool.
  With `digit_classes` (not in the paper) only those classes are drawn: the
  first digit is the `index % m`-th of the m pool images of those classes.
  """
  classes_allowed = tuple(digit_classes) or tuple(range(10))
  if not 2 <= num_digits <= len(classes_allowed):
    raise ValueError(f"num_digits must be in 2..{len(classes_allowed)} (distinct"
                     f" classes of {classes_allowed}), got {num_digits}")
  if digit_classes:
    allowed = np.flatnonzero(np.isin(pool.labels, classes_allowed))
    first = int(allowed[int(index) % len(allowed)])
  else:
    first = int(index) % len(pool)
  first_class = int(pool.labels[first])
  others = np.array([c for c in classes_allowed if c != first_class])
  classes = [first_class] + rng.permutation(others)[:num_digits - 1].tolist()
  indices = [first]
  for c in classes[1:]:
    candidates = pool.indices_by_class[c]
    indices.append(int(candidates[rng.integers(len(candidates))]))
  is_sync = not bool(rng.random() < NO_SYNC_PROB)
  coords = random_walk(num_digits, is_sync, rng, max_step=max_step)
  label = (pair_labels.pair_label(classes[0], classes[1]) if is_sync
           else pair_labels.NO_SYNC_LABEL)
  return VideoSpec(
      digits=np.asarray(classes, np.int32),
      digit_indices=np.asarray(indices, np.int32),
      coords=coords,
      is_sync=is_sync,
      label=label)


def render_canvas(images: np.ndarray, coords: np.ndarray) -> np.ndarray:
  """Full-resolution frames before down-sampling (spec §10.1 step 6).

  The original composites on a float canvas and clips it to [0, 255]; with
  uint8 digits every canvas value is already an integer in 0..255, so a uint8
  canvas holds exactly the same values.

  Args:
    images: uint8 [n, 28, 28] digit images, drawn in order 0..n-1.
    coords: int [T, n, 2] top-left (row, col) per frame.

  Returns:
    uint8 [T, 100, 100].
  """
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f"render_canvas expects uint8 digit images, got {images.dtype}")
  num_frames = coords.shape[0]
  canvas = np.zeros((num_frames, CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
  masks = images >= DRAW_THRESHOLD  # "front": faint pixels keep what is below.
  for t in range(num_frames):
    for k in range(images.shape[0]):
      r, c = coords[t, k]
      patch = canvas[t, r:r + DIGIT_SIZE, c:c + DIGIT_SIZE]
      np.copyto(patch, images[k], where=masks[k])
  return canvas


def render_video(images: np.ndarray, coords: np.ndarray,
                 output_size: int = OUTPUT_SIZE,
                 channels: tuple[int, ...] | None = None,
                 num_channels: int = 1) -> np.ndarray:
  """Frames as stored: uint8 [T, S, S, C], S = 64 and C = 1 in the paper (spec §10.1 steps 6-7).

  With `channels` (not in the paper) digit k is drawn alone into channel
  `channels[k]` of `num_channels`, so the channel names the digit's class and
  digits never occlude each other.
  """
  if channels is None:
    layers = [render_canvas(images, coords)]
  else:
    if len(channels) != len(images):
      raise ValueError(f"render_video: {len(channels)} channels for {len(images)} digits")
    layers = []
    for ch in range(num_channels):
      mine = [k for k, c in enumerate(channels) if c == ch]
      layers.append(render_canvas(images[mine], coords[:, mine]) if mine else
                    np.zeros((coords.shape[0], CANVAS_SIZE, CANVAS_SIZE), np.uint8))
  return np.stack([
      np.stack([legacy_imresize.imresize_bilinear(frame, (output_size, output_size))
                for frame in canvas])
      for canvas in layers
  ], axis=-1)


def class_channels(digits: np.ndarray, digit_classes: tuple[int, ...] = ()) -> tuple[int, ...]:
  """Channel of each digit when every class has its own: its class's position
  in `digit_classes` (all ten classes when empty)."""
  order = tuple(digit_classes) or tuple(range(10))
  return tuple(order.index(int(c)) for c in digits)


def generate_video(pool: DigitPool, index: int, num_digits: int, seed: int,
                   split: str, *, digit_classes: tuple[int, ...] = (),
                   max_step: int = MAX_STEP,
                   output_size: int = OUTPUT_SIZE,
                   channel_per_class: bool = False) -> tuple[np.ndarray, VideoSpec]:
  """Video `index` of `split`: (uint8 frames [10, S, S, C], its VideoSpec).

  The defaults are the paper's (C = 1); `digit_classes`, `max_step`,
  `output_size` and `channel_per_class` (C = the number of classes, each digit
  in its class's channel) are the knobs of the CPU settings (SyncMnistConfig).
  The motion and digits do not depend on `channel_per_class`.
  """
  spec = sample_video_spec(pool, index, num_digits, video_rng(seed, split, index),
                           digit_classes=digit_classes, max_step=max_step)
  images = pool.images[spec.digit_indices]
  if not channel_per_class:
    return render_video(images, spec.coords, output_size), spec
  return render_video(images, spec.coords, output_size,
                      channels=class_channels(spec.digits, digit_classes),
                      num_channels=len(digit_classes) or 10), spec
