"""Multi-view evaluation: S spatial x K temporal views per video.

Layout (spec §9.3): frames are resized so the short side is `short_side`;
temporal view k is the uniform sampling shifted by `round(k / K * n / T)`;
spatial view s is the crop at (dl[s], dc[s]) of the diagonal sweep
(`video_augment.diagonal_crop_windows`; the central crop when S = 1). The
V = K * S views of a video are ordered temporal-major (k, then s), folded into
the batch axis as separate examples that carry the video's `video_index`, and
their logits are averaged per video afterwards (`average_logits_per_video`).

Presets: "1x1" (one central 224 crop, the paper's single-clip protocol),
"3x2" (3 crops of 256 x 2 samplings), "11x2" (the paper's dense protocol:
11 crops of 256 x 2 samplings = 22 clips at 256x256).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from rstg_jax.data import video_augment
from rstg_jax.data import video_sampling


@dataclasses.dataclass(frozen=True)
class ViewSpec:
  """How an evaluation video is cut into clips."""
  spatial_views: int = 1
  temporal_views: int = 1
  crop_size: int = 224
  short_side: int | None = 256  # resize before cropping; None keeps the stored size

  @property
  def num_views(self) -> int:
    return self.spatial_views * self.temporal_views


VIEW_PRESETS = {
    "1x1": ViewSpec(spatial_views=1, temporal_views=1, crop_size=224, short_side=256),
    "3x2": ViewSpec(spatial_views=3, temporal_views=2, crop_size=256, short_side=256),
    "11x2": ViewSpec(spatial_views=11, temporal_views=2, crop_size=256, short_side=256),
}


def view_spec(name_or_spec: str | ViewSpec) -> ViewSpec:
  if isinstance(name_or_spec, ViewSpec):
    return name_or_spec
  if name_or_spec not in VIEW_PRESETS:
    raise ValueError(f"unknown view preset {name_or_spec!r}; known: {sorted(VIEW_PRESETS)}")
  return VIEW_PRESETS[name_or_spec]


def view_clips(encoded: tf.Tensor, num_frames, height, width, spec: ViewSpec,
               clip_frames: int) -> tf.Tensor:
  """All views of one video, temporal-major; float32 [V, T, c, c, 3], 0..255.

  Args:
    encoded: tf.string [N] JPEG frames.
    num_frames, height, width: the stored video's frame count and frame size.
    spec: the view layout.
    clip_frames: T, frames per clip.
  """
  indices = video_sampling.temporal_view_indices(num_frames, clip_frames,
                                                 spec.temporal_views)  # [K, T]
  flat = tf.reshape(indices, [-1])
  frames = tf.cast(video_augment.decode_frames(encoded, flat), tf.float32)  # [K*T, H, W, 3]
  if spec.short_side is not None:
    new_h, new_w = video_augment.short_side_size(height, width, spec.short_side)
    frames = video_augment.resize_clip(frames, new_h, new_w, method="bicubic")
    frames = tf.clip_by_value(frames, 0.0, 255.0)  # bicubic overshoots
  else:
    new_h, new_w = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  windows = video_augment.diagonal_crop_windows(new_h, new_w, spec.crop_size,
                                                spec.spatial_views)  # [S, 4]
  frames = tf.reshape(frames, tf.concat([[spec.temporal_views, clip_frames],
                                         tf.shape(frames)[1:]], 0))
  views = []
  for k in range(spec.temporal_views):
    for s in range(spec.spatial_views):
      w = windows[s]
      crop = frames[k, :, w[0]:w[0] + w[2], w[1]:w[1] + w[3], :]
      # Frames smaller than the crop are resized up to it (not padded).
      views.append(video_augment.resize_clip(crop, spec.crop_size, spec.crop_size))
  return tf.stack(views)


def average_logits_per_video(logits: np.ndarray, video_index: np.ndarray,
                             mask: np.ndarray | None = None):
  """Mean logits over the views of each video; padding rows (mask 0) ignored.

  Args:
    logits: [N, C] per-clip logits.
    video_index: [N] int, the video each clip belongs to.
    mask: [N], 1 for real clips, 0 for padding (None: all real).

  Returns:
    (video_indices [M] sorted, mean_logits [M, C] float64, num_views [M]).
  """
  logits = np.asarray(logits, np.float64)
  video_index = np.asarray(video_index).astype(np.int64)
  keep = np.ones(len(logits), bool) if mask is None else np.asarray(mask) > 0
  videos, inverse = np.unique(video_index[keep], return_inverse=True)
  sums = np.zeros((len(videos), logits.shape[1]))
  np.add.at(sums, inverse, logits[keep])
  counts = np.bincount(inverse, minlength=len(videos))
  return videos, sums / counts[:, None], counts


class ViewAverager:
  """Collects per-clip eval outputs batch by batch; averages views per video.

  Checks that every video got exactly `views_per_video` clips (when given), so
  a double count or a lost view is an error, not a silently wrong accuracy.
  """

  def __init__(self, views_per_video: int | None):
    self.views_per_video = views_per_video
    self._parts: dict[str, list[np.ndarray]] = {
        "logits": [], "label": [], "video_index": [], "mask": [], "video_id": []}

  def update(self, logits, label, video_index, mask, video_id=None) -> None:
    """Adds one batch: logits [B, C], label/video_index/mask [B], video_id [B] or None."""
    self._parts["logits"].append(np.asarray(logits))
    self._parts["label"].append(np.asarray(label))
    self._parts["video_index"].append(np.asarray(video_index))
    self._parts["mask"].append(np.asarray(mask))
    if video_id is not None:
      self._parts["video_id"].append(np.asarray(video_id))

  def result(self) -> dict[str, np.ndarray]:
    """{'video_index' [M], 'logits' [M, C], 'label' [M], 'video_id' [M] (if given)}."""
    cat = {k: np.concatenate(v) for k, v in self._parts.items() if v}
    videos, mean, counts = average_logits_per_video(cat["logits"], cat["video_index"],
                                                    cat["mask"])
    bad = videos[counts != self.views_per_video] if self.views_per_video else []
    if len(bad):
      raise ValueError(f"videos {bad[:10].tolist()} have view counts "
                       f"{counts[counts != self.views_per_video][:10].tolist()}, "
                       f"expected {self.views_per_video} each")
    real_rows = np.flatnonzero(cat["mask"] > 0)
    _, first, inverse = np.unique(cat["video_index"][real_rows], return_index=True,
                                  return_inverse=True)
    rows = real_rows[first]  # first real clip of each video: its label and id
    labels = cat["label"][rows]
    mismatch = cat["label"][real_rows] != labels[inverse]
    if np.any(mismatch):
      v = cat["video_index"][real_rows][mismatch][:10].tolist()
      raise ValueError(f"videos {v} have clips with different labels")
    out = {"video_index": videos, "logits": mean, "label": labels}
    if "video_id" in cat:
      out["video_id"] = cat["video_id"][rows]
    return out
