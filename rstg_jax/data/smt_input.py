"""tf.data input pipelines for the Something-Something tfds builders.

Training (`make_train_dataset`): per-process shard of the split, shuffled,
repeated; for each example, on the fly and deterministic given `seed` (each
epoch different): temporal sampling (`uniform`, the paper's, or `segment`
with jitter), a crop window with optional scale/aspect jitter decoded directly
from the JPEGs of the sampled frames only, resize to `crop_size`, brightness
jitter (one delta per clip), optional flip with left/right label swap,
normalisation (x - 114.75) / 57.375. Batches: `video` [B, T, S, S, 3],
`label` [B] int32.

Evaluation (`make_eval_dataset`): per-process shard; each video cut into
V = S x K views (`multiview.ViewSpec`; "1x1" is the central crop); views
folded into the batch as examples that carry `video_index` (global over
processes); the clip stream is padded with `mask` = 0 examples so that every
process runs the same number of full batches and every video counts once.
Batches: `video` [B, T, c, c, 3], `label` [B] int32 (-1 for the unlabelled test
split), `mask` [B] float32, `video_index` [B] int32, and `video_id` [B]
(bytes) when `include_video_id=True` (host-side only: pop it before sending
a batch to devices).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from rstg_jax.data import multiview
from rstg_jax.data import video_augment
from rstg_jax.data import video_sampling

AUTOTUNE = tf.data.AUTOTUNE


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return process_index, process_count


def process_splits(split: str, process_count: int) -> list:
  """The split cut into one contiguous, near-equal part per process."""
  return tfds.even_splits(split, n=process_count, drop_remainder=False)


def _read(builder: tfds.core.DatasetBuilder, split, *, shuffle_files: bool,
          seed: int | None) -> tf.data.Dataset:
  return builder.as_dataset(
      split=split, shuffle_files=shuffle_files,
      decoders={"frames": tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False))


def _options(num_parallel_calls) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True  # same order for the same seed
  options.threading.private_threadpool_size = (
      0 if num_parallel_calls == AUTOTUNE else max(int(num_parallel_calls), 1))
  return options


def train_clip(example: dict, seed, *, num_frames: int = 32, crop_size: int = 224,
               sampling: str = "uniform", crop_scale: Sequence[float] = (0.875, 0.875),
               crop_aspect: Sequence[float] = (1.0, 1.0), brightness_delta: float = 0.1,
               flip_prob: float = 0.0, flip_label_map: np.ndarray | None = None,
               normalize_on_host: bool = True) -> dict[str, tf.Tensor]:
  """One augmented training clip from one stored example (tf, graph mode).

  Args:
    example: tfds example with `frames` as encoded JPEG strings [N].
    seed: stateless seed, int tensor [2].

  Returns:
    {'video': [T, crop, crop, 3] float32 normalised (uint8 if not
    normalize_on_host), 'label': int32 scalar}.
  """
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
  indices = video_sampling.sample_indices(sampling, example["num_frames"], num_frames,
                                          seed=seeds[0])
  window = video_augment.random_crop_window(example["height"], example["width"], seeds[1],
                                            crop_scale, crop_aspect)
  clip = video_augment.decode_frames(example["frames"], indices, window)
  clip = video_augment.resize_clip(clip, crop_size, crop_size)
  clip = video_augment.random_brightness(clip, seeds[2], brightness_delta)
  clip, label = video_augment.random_flip(clip, example["label"], seeds[3], flip_prob,
                                          flip_label_map)
  clip = tf.ensure_shape(clip, [num_frames, crop_size, crop_size, 3])
  if normalize_on_host:
    video = video_augment.normalize(clip)
  else:
    video = tf.cast(tf.round(clip), tf.uint8)
  return {"video": video, "label": tf.cast(label, tf.int32)}


def make_train_dataset(builder: tfds.core.DatasetBuilder, *, batch_size: int,
                       split: str = "train", seed: int = 0, num_frames: int = 32,
                       crop_size: int = 224, sampling: str = "uniform",
                       crop_scale: Sequence[float] = (0.875, 0.875),
                       crop_aspect: Sequence[float] = (1.0, 1.0),
                       brightness_delta: float = 0.1, flip_prob: float = 0.0,
                       flip_label_map: np.ndarray | None = None,
                       shuffle_buffer: int = 1024, repeat: bool = True,
                       num_parallel_calls: int = AUTOTUNE, prefetch: int = 2,
                       normalize_on_host: bool = True,
                       process_index: int | None = None,
                       process_count: int | None = None) -> tf.data.Dataset:
  """Infinite (if `repeat`) stream of augmented training batches of this process.

  Args:
    builder: a prepared Something-Something builder (any config).
    batch_size: per-process batch size (the global batch / process count).
    seed: base seed; the stream is a deterministic function of it.
    num_frames: T frames per clip (spec: 32).
    crop_size: output side (spec: 224).
    sampling: "uniform" (the paper: int(linspace(0, n-1, T)), no jitter) or
      "segment" (one random frame per segment).
    crop_scale: crop side as a fraction of the frame's short side, U[min, max];
      (0.875, 0.875) is the paper's 224 crop of a short-side-256 frame, e.g.
      (0.6, 1.0) adds scale jitter. Works for both stored configs.
    crop_aspect: aspect-ratio jitter range (width / height), log-uniform.
    brightness_delta: ± brightness jitter in [0, 1] units (spec: 0.1); 0 = off.
    flip_prob: horizontal flip probability (default 0: flips change the
      meaning of left/right classes); > 0 needs `flip_label_map`.
    flip_label_map: [num_classes] label after a flip
      (`rstg_datasets.smt_common.class_names.flip_label_map(names)`).
    shuffle_buffer: examples in the shuffle buffer (reshuffled every epoch).
    repeat: repeat forever.
    num_parallel_calls: parallel clip decodes (tf.data.AUTOTUNE or an int).
    prefetch: batches prefetched.
    normalize_on_host: float32 normalised videos; False gives uint8 (4x less
      host-to-device traffic; normalise with `video_augment.normalize_on_device`).
    process_index, process_count: this process's shard (default: jax's).
  """
  process_index, process_count = _process(process_index, process_count)
  ds = _read(builder, process_splits(split, process_count)[process_index],
             shuffle_files=True, seed=seed)
  ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  # The running example count (over epochs) makes each epoch's augmentation new.
  ds = ds.enumerate()
  process_seed = seed * 1_000_003 + process_index  # different streams per process

  def _map(count, example):
    return train_clip(
        example, tf.stack([tf.cast(process_seed, tf.int64), count]), num_frames=num_frames,
        crop_size=crop_size, sampling=sampling, crop_scale=crop_scale,
        crop_aspect=crop_aspect, brightness_delta=brightness_delta, flip_prob=flip_prob,
        flip_label_map=flip_label_map, normalize_on_host=normalize_on_host)

  ds = ds.map(_map, num_parallel_calls=num_parallel_calls, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(prefetch).with_options(_options(num_parallel_calls))


@dataclasses.dataclass(frozen=True)
class EvalInput:
  """An evaluation stream and the numbers a loop needs."""
  dataset: tf.data.Dataset = dataclasses.field(repr=False)
  num_videos: int  # videos of the whole split (all processes)
  num_videos_this_process: int
  video_index_offset: int  # first global video_index of this process
  views_per_video: int
  num_batches: int  # the same on every process
  class_names: list[str] = dataclasses.field(repr=False)

  def __iter__(self):
    """NumPy batches (dicts), `num_batches` of them."""
    return self.dataset.as_numpy_iterator()

  def __len__(self) -> int:
    return self.num_batches


def make_eval_dataset(builder: tfds.core.DatasetBuilder, *, batch_size: int,
                      split: str = "validation", views: str | multiview.ViewSpec = "1x1",
                      num_frames: int = 32, include_video_id: bool = False,
                      num_parallel_calls: int = AUTOTUNE, prefetch: int = 2,
                      normalize_on_host: bool = True,
                      process_index: int | None = None,
                      process_count: int | None = None) -> EvalInput:
  """Padded, masked evaluation batches of this process; every video once.

  Args:
    builder: a prepared Something-Something builder.
    batch_size: per-process batch size in clips.
    split: a split name (or tfds split string).
    views: a preset name ("1x1", "3x2", "11x2") or a `multiview.ViewSpec`.
    num_frames: T frames per clip.
    include_video_id: add `video_id` [B] (bytes; b"" for padding).
    num_parallel_calls, prefetch, normalize_on_host, process_index,
    process_count: as in `make_train_dataset`.
  """
  spec = multiview.view_spec(views)
  process_index, process_count = _process(process_index, process_count)
  parts = process_splits(split, process_count)
  counts = [builder.info.splits[p].num_examples for p in parts]
  offset = sum(counts[:process_index])
  views_per_video = spec.num_views
  # Every process runs as many batches as the largest shard needs.
  num_batches = max(1, math.ceil(max(counts) * views_per_video / batch_size))
  num_pad = num_batches * batch_size - counts[process_index] * views_per_video

  ds = _read(builder, parts[process_index], shuffle_files=False, seed=None).enumerate()

  def _views(index, example):
    clips = multiview.view_clips(example["frames"], example["num_frames"], example["height"],
                                 example["width"], spec, num_frames)
    clips = tf.ensure_shape(clips, [views_per_video, num_frames, spec.crop_size,
                                    spec.crop_size, 3])
    video = (video_augment.normalize(clips) if normalize_on_host
             else tf.cast(tf.round(clips), tf.uint8))
    out = {
        "video": video,
        "label": tf.fill([views_per_video], tf.cast(example["label"], tf.int32)),
        "mask": tf.ones([views_per_video], tf.float32),
        "video_index": tf.fill([views_per_video], tf.cast(index + offset, tf.int32)),
    }
    if include_video_id:
      out["video_id"] = tf.fill([views_per_video], example["video_id"])
    return out

  ds = ds.map(_views, num_parallel_calls=num_parallel_calls, deterministic=True).unbatch()
  spec_el = ds.element_spec
  pad = {k: tf.zeros(s.shape, s.dtype) for k, s in spec_el.items()}
  pad["video_index"] = tf.constant(-1, tf.int32)
  ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat(num_pad))
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(prefetch)
  return EvalInput(
      dataset=ds.with_options(_options(num_parallel_calls)),
      num_videos=sum(counts), num_videos_this_process=counts[process_index],
      video_index_offset=offset, views_per_video=views_per_video,
      num_batches=num_batches, class_names=list(builder.info.features["label"].names))


# ---- from an ml_collections config ---------------------------------------------------
#
# `config.dataset` fields read (defaults in brackets): name
# ["something_something_v1"; "<name>/<config>" picks a stored config], data_dir [None],
# num_frames [32], image_size [224], brightness_max_delta [0.1],
# sampling ["uniform"], crop_scale [image_size / eval_short_side: the paper's fixed
# crop], crop_aspect [(1, 1)], flip_prob [0.0], shuffle_buffer [1024],
# num_eval_spatial_clips [1], num_eval_temporal_clips [1],
# eval_short_side [round(image_size * 256 / 224)], eval_crop_size [image_size for one
# spatial clip, else eval_short_side: the 256x256 crops of the dense protocol].


def _get(config, key, default):
  return config.get(key, default) if hasattr(config, "get") else getattr(config, key, default)


def builder_from_config(dataset_config, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The (registered) tfds builder named by `dataset_config.name`."""
  # Importing the builder modules registers them with tfds.
  import rstg_datasets.something_something_v1  # pylint: disable=g-import-not-at-top,unused-import
  import rstg_datasets.something_something_v2  # pylint: disable=g-import-not-at-top,unused-import
  name = _get(dataset_config, "name", "something_something_v1")
  return tfds.builder(name, data_dir=data_dir or _get(dataset_config, "data_dir", None))


def _eval_short_side(dataset_config) -> int:
  image = _get(dataset_config, "image_size", 224)
  return int(_get(dataset_config, "eval_short_side", None) or round(image * 256 / 224))


def train_dataset_from_config(builder, dataset_config, *, batch_size: int, seed: int,
                              **kwargs) -> tf.data.Dataset:
  """`make_train_dataset` with its arguments taken from `config.dataset`."""
  image = _get(dataset_config, "image_size", 224)
  scale = image / _eval_short_side(dataset_config)
  flip_prob = _get(dataset_config, "flip_prob", 0.0)
  flip_map = None
  if flip_prob > 0:
    from rstg_datasets.smt_common import class_names  # pylint: disable=g-import-not-at-top
    flip_map = class_names.flip_label_map(builder.info.features["label"].names)
  args = dict(
      batch_size=batch_size, seed=seed, num_frames=_get(dataset_config, "num_frames", 32),
      crop_size=image, sampling=_get(dataset_config, "sampling", "uniform"),
      crop_scale=tuple(_get(dataset_config, "crop_scale", (scale, scale))),
      crop_aspect=tuple(_get(dataset_config, "crop_aspect", (1.0, 1.0))),
      brightness_delta=_get(dataset_config, "brightness_max_delta", 0.1),
      flip_prob=flip_prob, flip_label_map=flip_map,
      shuffle_buffer=_get(dataset_config, "shuffle_buffer", 1024))
  args.update(kwargs)
  return make_train_dataset(builder, **args)


def eval_dataset_from_config(builder, dataset_config, *, batch_size: int,
                             split: str = "validation", **kwargs) -> EvalInput:
  """`make_eval_dataset` with the view layout taken from `config.dataset`."""
  image = _get(dataset_config, "image_size", 224)
  spatial = _get(dataset_config, "num_eval_spatial_clips", 1)
  short = _eval_short_side(dataset_config)
  spec = multiview.ViewSpec(
      spatial_views=spatial, temporal_views=_get(dataset_config, "num_eval_temporal_clips", 1),
      crop_size=_get(dataset_config, "eval_crop_size", image if spatial == 1 else short),
      short_side=short)
  args = dict(batch_size=batch_size, split=split, views=spec,
              num_frames=_get(dataset_config, "num_frames", 32))
  args.update(kwargs)
  return make_eval_dataset(builder, **args)
