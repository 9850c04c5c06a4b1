"""Decoded training clips/s of the Something-Something input pipeline on this CPU.

Builds a tiny v1 data set from generated JPEG frames of v1's size (100 px
high) into a temporary folder, then times `smt_input.make_train_dataset`
(32 frames at 224x224 by default, uniform sampling, brightness jitter,
normalisation) for each number of parallel calls.

  python experiments/bench_input.py                      # short256 and original configs
  python experiments/bench_input.py --configs=original --parallel_calls=1,2,4
"""
from __future__ import annotations

import os
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

_VIDEOS = flags.DEFINE_integer("videos", 24, "videos in the tiny data set")
_FRAMES = flags.DEFINE_integer("frames", 45, "frames per video (v1 averages ~36)")
_HEIGHT = flags.DEFINE_integer("height", 100, "frame height (v1: 100)")
_WIDTH = flags.DEFINE_integer("width", 176, "frame width")
_CLIP_FRAMES = flags.DEFINE_integer("clip_frames", 32, "frames per clip")
_CROP = flags.DEFINE_integer("crop", 224, "crop size")
_BATCH = flags.DEFINE_integer("batch", 8, "clips per batch")
_BATCHES = flags.DEFINE_integer("batches", 12, "timed batches (after 2 warm-up batches)")
_PARALLEL = flags.DEFINE_list("parallel_calls", None,
                              "numbers of parallel calls to time (default: 1 and all cores)")
_CONFIGS = flags.DEFINE_list("configs", ["short256", "original"], "stored configs")
_SAMPLING = flags.DEFINE_string("sampling", "uniform", "uniform | segment")


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  logging.set_verbosity(logging.ERROR)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from rstg_datasets.smt_common import fake_tree as ft  # pylint: disable=g-import-not-at-top
  from rstg_datasets.something_something_v1 import SomethingSomethingV1  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import smt_input  # pylint: disable=g-import-not-at-top
  del tfds

  cores = os.cpu_count() or 1
  parallel = [int(p) for p in (_PARALLEL.value or sorted({1, cores}))]
  names = ft.fake_class_names()
  with tempfile.TemporaryDirectory() as tmp:
    videos = [ft.FakeVideo(str(1000 + k), names[k % 174], _FRAMES.value, _HEIGHT.value,
                           _WIDTH.value) for k in range(_VIDEOS.value)]
    ft.write_v1_tree(os.path.join(tmp, "manual"),
                     {"train": videos, "validation": [ft.FakeVideo("1", names[0], 3)],
                      "test": [ft.FakeVideo("2", None, 3)]})
    print(f"cores: {cores}; data: {_VIDEOS.value} videos x {_FRAMES.value} frames of "
          f"{_HEIGHT.value}x{_WIDTH.value}; clip {_CLIP_FRAMES.value}x{_CROP.value}^2, "
          f"batch {_BATCH.value}, sampling {_SAMPLING.value}")
    for config in _CONFIGS.value:
      t0 = time.perf_counter()
      builder = ft.prepare(SomethingSomethingV1, os.path.join(tmp, "manual"),
                           os.path.join(tmp, "data"), config=config)
      build_s = time.perf_counter() - t0
      frame = next(iter(builder.as_dataset("train").take(1)))["frames"].shape
      print(f"[{config}] built in {build_s:.1f} s ({_VIDEOS.value * _FRAMES.value / build_s:.0f} "
            f"frames/s); stored frames {frame[1]}x{frame[2]}")
      for calls in parallel:
        ds = smt_input.make_train_dataset(
            builder, batch_size=_BATCH.value, num_frames=_CLIP_FRAMES.value,
            crop_size=_CROP.value, sampling=_SAMPLING.value, num_parallel_calls=calls,
            shuffle_buffer=_VIDEOS.value, process_index=0, process_count=1, seed=0)
        it = ds.as_numpy_iterator()
        for _ in range(2):
          next(it)
        t0 = time.perf_counter()
        for _ in range(_BATCHES.value):
          batch = next(it)
        dt = time.perf_counter() - t0
        clips = _BATCHES.value * _BATCH.value
        print(f"[{config}] num_parallel_calls={calls}: {clips / dt:.1f} clips/s "
              f"({clips * _CLIP_FRAMES.value / dt:.0f} frames/s), batch "
              f"{tuple(batch['video'].shape)} {batch['video'].dtype}")


if __name__ == "__main__":
  app.run(main)
