"""Input pipelines for the Something-Something tfds builders (random access, grain).

The builders store ArrayRecord files, so any example can be read by index
(`builder.as_data_source`). That makes the training stream a pure function of
(seed, step): row r of the batch of step s is position g = s * rows + r of
its slice; epoch e = g // (rows * steps_per_epoch) is a fresh permutation of
the slice (seeded by (seed, e)), and the clip's augmentation is seeded by
(seed, g). A resumed run starts reading at the first position of its next
step: it reads and decodes no clip of the steps already done, and continues
exactly as an uninterrupted run. (The tf.data pipeline this replaces
reshuffled every pass and could only be resumed by re-reading.) grain runs the
reads and decodes in threads (`config.data.num_workers`); the per-clip work is
the TensorFlow code of `video_augment` / `multiview` as a `tf.function`, which
releases the GIL.

Training (`TrainSliceInput`, one slice of the split; `SlicedTrainInput`
combines the slices of this process): for each clip, temporal sampling
(`uniform`, the paper's, or `segment` with jitter), a crop window with
optional scale/aspect jitter decoded directly from the JPEGs of the sampled
frames only, resize to `crop_size`, brightness jitter (one delta per clip),
optional flip with left/right label swap. Batches: `video` [B, T, S, S, 3]
uint8 (the model normalises: (x - 114.75) / 57.375), `label` [B] int32.

Evaluation (`EvalInput`): this process's contiguous share of the videos; each
video cut into V = S x K views (`multiview.ViewSpec`; "1x1" is the central
crop), the views folded into the batch as clips that carry `video_index`
(global over processes), padded with `mask` = 0 clips so that every process
runs the same number of full batches and every video counts once whatever
the batch size. Batches: `video` [B, T, c, c, 3] uint8, `label` [B] int32 (-1
for the unlabelled test split), `mask` [B] float32, `video_index` [B] int32,
`video_id` [B, 32] uint8 (the id's UTF-8 bytes, zero-padded: it can travel
through a jitted step and be gathered from every process; `decode_video_ids`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import rstg_datasets
from rstg_jax.data import multiview
from rstg_jax.data import video_augment
from rstg_jax.data import video_sampling

Batch = dict[str, np.ndarray]
VIDEO_ID_BYTES = 32
SAMPLINGS = ("uniform", "segment")
SHORT_NAMES = {"v1": "something_something_v1", "v2": "something_something_v2"}


class DataError(ValueError):
  """The data named by the config is missing or unusable (the message says why)."""


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


def _int(feature) -> int:
  return int(feature.int64_list.value[0])


class ExampleSource:
  """Random access to the stored examples of one split, frames still JPEG-encoded.

  `source[i]` -> {'frames': [N] object array of JPEG bytes, 'num_frames',
  'height', 'width', 'label' (ints), 'video_id' (str)}. Every read index is
  appended to `reads` when `record_reads` is set (tests check what a resumed
  run reads).
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str):
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
      raise DataError(
          f"{builder.data_dir} stores {builder.info.file_format.value} files; the "
          "training input reads examples by index and needs ArrayRecord. Rebuild "
          "it (the builders write array_record by default), or convert it with "
          "`tfds convert_format --out_file_format=array_record`")
    if split not in builder.info.splits:
      raise DataError(f"split {split!r} is not in the build {builder.data_dir} "
                      f"(splits: {sorted(builder.info.splits)})")
    self.split = split
    self._source = builder.as_data_source(
        split, deserialize_method=tfds.decode.DeserializeMethod.DESERIALIZE_NO_DECODE)
    self.record_reads = False
    self.reads: list[int] = []

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    if self.record_reads:
      self.reads.append(int(index))
    f = self._source[int(index)].features.feature
    return {"frames": np.asarray(list(f["frames"].bytes_list.value), dtype=object),
            "num_frames": _int(f["num_frames"]), "height": _int(f["height"]),
            "width": _int(f["width"]), "label": _int(f["label"]),
            "video_id": f["video_id"].bytes_list.value[0].decode("utf-8")}


_EXAMPLE_SIGNATURE = (tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32),
                      tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32))


@dataclasses.dataclass(frozen=True)
class ClipSettings:
  """How a training clip is made (see `train_clip`)."""
  num_frames: int = 32
  crop_size: int = 224
  sampling: str = "uniform"
  crop_scale: tuple[float, float] = (0.875, 0.875)
  crop_aspect: tuple[float, float] = (1.0, 1.0)
  brightness_delta: float = 0.1
  flip_prob: float = 0.0
  flip_label_map: tuple[int, ...] | None = None

  def __post_init__(self):
    if self.sampling not in SAMPLINGS:
      raise ValueError(f"config.data.sampling={self.sampling!r}: use one of {SAMPLINGS}")
    if self.flip_prob > 0 and self.flip_label_map is None:
      raise ValueError("flip_prob > 0 needs flip_label_map (config.data.flip_prob)")


@functools.lru_cache(maxsize=16)
def _train_clip_fn(settings: ClipSettings):
  flip_map = (None if settings.flip_label_map is None
              else np.asarray(settings.flip_label_map, np.int64))

  @tf.function(input_signature=_EXAMPLE_SIGNATURE + (
      tf.TensorSpec([], tf.int64), tf.TensorSpec([2], tf.int64)))
  def fn(frames, num_frames, height, width, label, seed):
    out = train_clip({"frames": frames, "num_frames": num_frames, "height": height,
                      "width": width, "label": label}, seed,
                     num_frames=settings.num_frames, crop_size=settings.crop_size,
                     sampling=settings.sampling, crop_scale=settings.crop_scale,
                     crop_aspect=settings.crop_aspect,
                     brightness_delta=settings.brightness_delta,
                     flip_prob=settings.flip_prob, flip_label_map=flip_map,
                     normalize_on_host=False)
    return out["video"], out["label"]
  return fn


def _example_args(example: dict[str, Any]) -> tuple:
  return (tf.constant(example["frames"].tolist(), tf.string),
          tf.constant(example["num_frames"], tf.int32),
          tf.constant(example["height"], tf.int32),
          tf.constant(example["width"], tf.int32))


def _stack(items: Sequence[dict[str, np.ndarray]]) -> Batch:
  return {k: np.stack([it[k] for it in items]) for k in items[0]}


class TrainSliceInput:
  """Training rows of one slice of the split, a pure function of (seed, step).

  Args:
    source: the split (`ExampleSource`).
    slice_index, num_slices: this slice: examples [i * n_s, (i + 1) * n_s) with
      n_s = len(source) // num_slices (the remainder is never used, so every
      slice has the same number of steps per epoch).
    rows: rows of every step taken from this slice.
    seed: this slice's seed.
    settings: the clip augmentation.
    num_workers: decoding threads.
  """

  def __init__(self, source: ExampleSource, *, slice_index: int, num_slices: int,
               rows: int, seed: int, settings: ClipSettings, num_workers: int = 4):
    n = len(source) // num_slices
    if n < rows:
      raise DataError(f"config.batch_size: a slice of {n} training videos (split "
                      f"{source.split!r}: {len(source)} over {num_slices} slices) "
                      f"cannot fill {rows} rows per step")
    self.source, self.rows, self.seed = source, rows, seed
    self.first = slice_index * n
    self.num_examples = n
    self.steps_per_epoch = n // rows
    self.settings = settings
    self.num_workers = max(1, int(num_workers))
    self._lock = threading.Lock()
    self._perms: dict[int, np.ndarray] = {}
    self.positions_read: list[int] = []  # filled when source.record_reads is set

  def element_shape(self, key: str) -> tuple[int, ...]:
    if key != "video":
      raise KeyError(key)
    s = self.settings
    return (s.num_frames, s.crop_size, s.crop_size, 3)

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._perms:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
        self._perms[epoch] = rng.permutation(self.num_examples)
      return self._perms[epoch]

  def example_index(self, position: int) -> int:
    """The split index of row `position` (= step * rows + row) of this slice."""
    epoch, k = divmod(position, self.steps_per_epoch * self.rows)
    return self.first + int(self._permutation(epoch)[k])

  def load(self, position: int) -> dict[str, np.ndarray]:
    if self.source.record_reads:
      self.positions_read.append(position)
    example = self.source[self.example_index(position)]
    video, label = _train_clip_fn(self.settings)(
        *_example_args(example), tf.constant(example["label"], tf.int64),
        tf.constant([self.seed, position], tf.int64))
    return {"video": video.numpy(), "label": np.int32(label.numpy())}

  def iterate(self, start_step: int = 0) -> Iterator[Batch]:
    """Rows of steps start_step, start_step + 1, ... (forever)."""
    start = start_step * self.rows
    ds = grain.MapDataset.range(start, start + self.rows * 10**12).map(self.load)
    ds = ds.batch(self.rows, batch_fn=_stack)
    yield from ds.to_iter_dataset(grain.ReadOptions(
        num_threads=self.num_workers, prefetch_buffer_size=2 * self.num_workers))


def process_share(num_videos: int, process_index: int, process_count: int
                  ) -> tuple[int, int]:
  """(first video, count) of this process: contiguous, sizes differ by <= 1."""
  base, extra = divmod(num_videos, process_count)
  first = process_index * base + min(process_index, extra)
  return first, base + (process_index < extra)


@functools.lru_cache(maxsize=16)
def _view_clips_fn(spec: multiview.ViewSpec, clip_frames: int):
  @tf.function(input_signature=_EXAMPLE_SIGNATURE)
  def fn(frames, num_frames, height, width):
    clips = multiview.view_clips(frames, num_frames, height, width, spec, clip_frames)
    return tf.cast(tf.round(clips), tf.uint8)
  return fn


def view_clips_of(example: dict[str, Any], spec: multiview.ViewSpec,
                  num_frames: int) -> np.ndarray:
  """Every view of one example (`ExampleSource` layout: JPEG `frames`, `num_frames`,
  `height`, `width`), exactly as the evaluation cuts it; uint8 [V, T, c, c, 3]."""
  return _view_clips_fn(spec, num_frames)(*_example_args(example)).numpy()


def encode_video_id(video_id: str) -> np.ndarray:
  raw = video_id.encode("utf-8")
  if len(raw) > VIDEO_ID_BYTES:
    raise DataError(f"video id {video_id!r} is longer than {VIDEO_ID_BYTES} bytes")
  out = np.zeros(VIDEO_ID_BYTES, np.uint8)
  out[:len(raw)] = np.frombuffer(raw, np.uint8)
  return out


def decode_video_ids(rows: np.ndarray) -> list[str]:
  """[N, 32] uint8 (zero-padded UTF-8) -> N strings ('' for padding)."""
  return [bytes(r).rstrip(b"\0").decode("utf-8") for r in np.asarray(rows, np.uint8)]


class EvalInput:
  """Padded, masked evaluation batches of this process; every video once.

  Args:
    source: the split.
    batch_size: this process's batch in clips (need not divide the views).
    views: a preset name ("1x1", "3x2", "11x2") or a `multiview.ViewSpec`.
    num_frames: T frames per clip.
    process_index, process_count: this process (default: jax's).
    num_workers: decoding threads.
  """

  def __init__(self, source: ExampleSource, *, batch_size: int,
               views: str | multiview.ViewSpec = "1x1", num_frames: int = 32,
               process_index: int | None = None, process_count: int | None = None,
               num_workers: int = 4):
    if process_index is None or process_count is None:
      import jax  # pylint: disable=g-import-not-at-top
      process_index, process_count = jax.process_index(), jax.process_count()
    self.source, self.batch_size, self.num_frames = source, batch_size, num_frames
    self.spec = multiview.view_spec(views)
    self.views_per_video = self.spec.num_views
    self.num_examples = self.num_videos = len(source)
    self.first, self.count = process_share(len(source), process_index, process_count)
    largest = process_share(len(source), 0, process_count)[1]
    # Every process runs as many batches as the largest share needs.
    self.num_batches = max(1, math.ceil(largest * self.views_per_video / batch_size))
    self.num_workers = max(1, int(num_workers))

  def __len__(self) -> int:
    return self.num_batches

  def _load(self, index: int) -> dict[str, np.ndarray]:
    example = self.source[index]
    clips = view_clips_of(example, self.spec, self.num_frames)
    v = self.views_per_video
    return {"video": clips, "label": np.full(v, example["label"], np.int32),
            "mask": np.ones(v, np.float32), "video_index": np.full(v, index, np.int32),
            "video_id": np.tile(encode_video_id(example["video_id"]), (v, 1))}

  def _clips(self) -> Iterator[dict[str, np.ndarray]]:
    if not self.count:
      return
    ds = grain.MapDataset.range(self.first, self.first + self.count).map(self._load)
    for views in ds.to_iter_dataset(grain.ReadOptions(
        num_threads=self.num_workers, prefetch_buffer_size=2 * self.num_workers)):
      for k in range(self.views_per_video):
        yield {key: value[k] for key, value in views.items()}

  def __iter__(self) -> Iterator[Batch]:
    shape = (self.num_frames, self.spec.crop_size, self.spec.crop_size, 3)
    pad = {"video": np.zeros(shape, np.uint8), "label": np.int32(0),
           "mask": np.float32(0), "video_index": np.int32(-1),
           "video_id": np.zeros(VIDEO_ID_BYTES, np.uint8)}
    clips = self._clips()
    for _ in range(self.num_batches):
      rows = [next(clips, pad) for _ in range(self.batch_size)]
      yield _stack(rows)


# ---- from an ml_collections config ---------------------------------------------------


def builder_name(data_config) -> str:
  name = data_config.name
  base, sep, rest = name.partition("/")
  return SHORT_NAMES.get(base, base) + sep + rest


def load_builder(data_config) -> tfds.core.DatasetBuilder:
  """The prepared builder named by `config.data` (name, data_dir); clear errors."""
  # Importing the builder modules registers them with tfds.
  import rstg_datasets.something_something_v1  # pylint: disable=g-import-not-at-top,unused-import
  import rstg_datasets.something_something_v2  # pylint: disable=g-import-not-at-top,unused-import
  name = builder_name(data_config)
  if name.partition("/")[0] not in SHORT_NAMES.values():
    raise DataError(f"config.data.name={data_config.name!r}: use "
                    f"{sorted(SHORT_NAMES)} or {sorted(SHORT_NAMES.values())}, "
                    "optionally with '/<builder config>'")
  data_dir = rstg_datasets.resolve_data_dir(data_config.data_dir)
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise DataError(
        f"config.data.name={data_config.name!r} is not built in {data_dir} (looked "
        f"for {builder.data_dir}). Build it first (README: Something-Something) or "
        "set config.data.data_dir")
  return builder


def eval_short_side(data_config) -> int:
  return int(data_config.get("eval_short_side") or
             round(data_config.image_size * 256 / 224))


def clip_settings(data_config, class_names: Sequence[str]) -> ClipSettings:
  """The training-clip settings of `config.data`."""
  scale = data_config.image_size / eval_short_side(data_config)
  flip_map = None
  if data_config.flip_prob > 0:
    from rstg_datasets.smt_common import class_names as names_lib  # pylint: disable=g-import-not-at-top
    flip_map = tuple(int(x) for x in names_lib.flip_label_map(list(class_names)))
  return ClipSettings(
      num_frames=data_config.num_frames, crop_size=data_config.image_size,
      sampling=data_config.sampling,
      crop_scale=tuple(data_config.get("crop_scale") or (scale, scale)),
      crop_aspect=tuple(data_config.crop_aspect),
      brightness_delta=data_config.brightness_max_delta,
      flip_prob=data_config.flip_prob, flip_label_map=flip_map)


def view_spec_from_config(data_config, views: str) -> multiview.ViewSpec:
  """A view preset at this config's clip size ('1x1' = the central training crop;
  S > 1 spatial views take short-side crops, the dense protocol's 256 at 224)."""
  preset = multiview.view_spec(views)
  short = eval_short_side(data_config)
  crop = data_config.image_size if preset.spatial_views == 1 else short
  return dataclasses.replace(preset, crop_size=crop, short_side=short)
