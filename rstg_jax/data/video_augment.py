"""Per-clip decoding, cropping and photometric augmentation, as tf.data ops.

Clips are `[T, H, W, 3]` (channels last), pixel values 0..255. Crop windows are
`(top, left, height, width)` int32 tensors [4] in stored-frame pixels; every
frame of a clip uses the same window. Randomness is stateless (an int seed
tensor [2]), so a pipeline is deterministic given its seed.
"""
from __future__ import annotations

import tensorflow as tf

# Spec §9.2: (x - 114.75) / 57.375 on all channels (RGB as decoded).
PIXEL_MEAN = 114.75
PIXEL_STD = 57.375


def normalize(video: tf.Tensor) -> tf.Tensor:
  """(x - 114.75) / 57.375 in float32; works for uint8 or float input."""
  return (tf.cast(video, tf.float32) - PIXEL_MEAN) / PIXEL_STD


def normalize_on_device(video):
  """The same normalisation for a jax array (e.g. uint8 batches sent to devices)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return (jnp.asarray(video, jnp.float32) - PIXEL_MEAN) / PIXEL_STD


# ---- crop windows -------------------------------------------------------------------


def random_crop_window(height, width, seed, scale_range=(0.875, 0.875),
                       aspect_range=(1.0, 1.0)) -> tf.Tensor:
  """A random crop with scale (and optionally aspect-ratio) jitter.

  The crop's side is `s * min(height, width)`, `s ~ U[scale_range]`; with an
  aspect ratio `a ~ logU[aspect_range]` the sides are `side*sqrt(a)` (width) and
  `side/sqrt(a)` (height), clipped to the frame. The top-left is uniform over
  the valid positions. The default, 0.875 = 224/256, is the paper's 224 crop of
  a short-side-256 frame (with no jitter).

  Returns:
    int32 [4]: (top, left, crop_height, crop_width).
  """
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  scale = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
  log_aspect = tf.random.stateless_uniform(
      [], seeds[1], tf.math.log(float(aspect_range[0])), tf.math.log(float(aspect_range[1])))
  side = scale * tf.minimum(height, width)
  crop_h = tf.clip_by_value(tf.round(side / tf.exp(log_aspect / 2)), 1.0, height)
  crop_w = tf.clip_by_value(tf.round(side * tf.exp(log_aspect / 2)), 1.0, width)
  # floor(u * (room + 1)) is uniform over 0..room.
  top = tf.floor(tf.random.stateless_uniform([], seeds[2]) * (height - crop_h + 1))
  left = tf.floor(tf.random.stateless_uniform([], seeds[3]) * (width - crop_w + 1))
  return tf.cast(tf.stack([top, left, crop_h, crop_w]), tf.int32)


def central_crop_window(height, width, crop_size: int) -> tf.Tensor:
  """Centre crop: top-left = size // 2 - crop // 2 (spec §10.2); int32 [4]."""
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)
  crop_h = tf.minimum(crop_size, height)
  crop_w = tf.minimum(crop_size, width)
  return tf.stack([height // 2 - crop_h // 2, width // 2 - crop_w // 2, crop_h, crop_w])


def diagonal_crop_windows(height, width, crop_size: int, num_crops: int) -> tf.Tensor:
  """The spatial views of multi-view evaluation (spec §9.3); int32 [S, 4].

  Crop k has top-left (dl[k], dc[k]), dl = int(linspace(0, H - c, S)),
  dc = int(linspace(0, W - c, S)): a diagonal sweep that, for landscape
  frames of height c, slides along the width. One crop is the central crop.
  """
  if num_crops == 1:
    return central_crop_window(height, width, crop_size)[None]
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)
  crop_h = tf.minimum(crop_size, height)
  crop_w = tf.minimum(crop_size, width)
  dl = tf.cast(tf.linspace(tf.constant(0.0, tf.float64), tf.cast(height - crop_h, tf.float64), num_crops), tf.int32)
  dc = tf.cast(tf.linspace(tf.constant(0.0, tf.float64), tf.cast(width - crop_w, tf.float64), num_crops), tf.int32)
  return tf.stack([dl, dc, tf.fill([num_crops], crop_h), tf.fill([num_crops], crop_w)], axis=1)


# ---- decoding -------------------------------------------------------------------------


def decode_frames(encoded: tf.Tensor, indices: tf.Tensor,
                  window: tf.Tensor | None = None) -> tf.Tensor:
  """Decodes only the frames at `indices` (each distinct frame once).

  Args:
    encoded: tf.string [N], one JPEG per frame.
    indices: int32 [T] frame indices (repeats allowed).
    window: optional int32 [4] crop window; then only the window is decoded
      (`tf.io.decode_and_crop_jpeg`), which is cheaper than decoding the frame.

  Returns:
    uint8 [T, h, w, 3].
  """
  unique, position = tf.unique(indices)
  chosen = tf.gather(encoded, unique)
  if window is None:
    fn = lambda x: tf.io.decode_jpeg(x, channels=3)
  else:
    fn = lambda x: tf.io.decode_and_crop_jpeg(x, window, channels=3)
  frames = tf.map_fn(fn, chosen, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
  return tf.gather(frames, position)


def resize_clip(clip: tf.Tensor, height, width, method: str = "bilinear") -> tf.Tensor:
  """Resizes [T, H, W, 3] to [T, height, width, 3] float32 (no-op if same size).

  Down-scaling is antialiased so that a large crop shrunk to 224 does not alias.
  """
  clip = tf.cast(clip, tf.float32)
  shape = tf.shape(clip)
  same = tf.logical_and(tf.equal(shape[1], height), tf.equal(shape[2], width))
  resized = tf.cond(
      same, lambda: clip,
      lambda: tf.image.resize(clip, tf.stack([height, width]), method=method, antialias=True))
  if isinstance(height, int) and isinstance(width, int):
    resized = tf.ensure_shape(resized, [None, height, width, None])
  return resized


def short_side_size(height, width, short_side: int) -> tuple[tf.Tensor, tf.Tensor]:
  """(h, w) with the short side `short_side`, long = int(long / short * short_side)."""
  h = tf.cast(height, tf.float64)
  w = tf.cast(width, tf.float64)
  portrait = h > w
  short = tf.minimum(h, w)
  long = tf.cast(tf.maximum(h, w) / short * short_side, tf.int32)
  new_h = tf.where(portrait, long, short_side)
  new_w = tf.where(portrait, short_side, long)
  return new_h, new_w


# ---- photometric / geometric augmentation --------------------------------------------


def random_brightness(clip: tf.Tensor, seed, max_delta: float = 0.1) -> tf.Tensor:
  """Adds one delta ~ U[-max_delta, max_delta] (in [0, 1] units, x255) per clip.

  As `tf.image.random_brightness` on the uint8 stack in the original (spec
  §9.2): the same delta for every frame, saturating at 0 and 255.
  """
  if max_delta <= 0:
    return tf.cast(clip, tf.float32)
  delta = tf.random.stateless_uniform([], seed, -max_delta, max_delta)
  return tf.clip_by_value(tf.cast(clip, tf.float32) + 255.0 * delta, 0.0, 255.0)


def random_flip(clip: tf.Tensor, label: tf.Tensor, seed, prob: float,
                flip_label_map: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
  """Horizontal flip with probability `prob`; the label follows the flip.

  A flip turns "from left to right" into "from right to left", so it is only
  allowed with a `flip_label_map` ([num_classes] int32, identity except the
  left/right pairs, see `rstg_datasets.smt_common.class_names.flip_label_map`).
  Unlabelled clips (label -1) keep -1.
  """
  if prob <= 0:
    return clip, label
  if flip_label_map is None:
    raise ValueError("random_flip needs flip_label_map: flipping changes the meaning "
                     "of left/right classes")
  table = tf.constant(flip_label_map, tf.int32)
  do_flip = tf.random.stateless_uniform([], seed) < prob
  label = tf.cast(label, tf.int32)
  flipped_label = tf.where(label >= 0, tf.gather(table, tf.maximum(label, 0)), label)
  clip = tf.cond(do_flip, lambda: tf.reverse(clip, axis=[2]), lambda: clip)
  return clip, tf.where(do_flip, flipped_label, label)
