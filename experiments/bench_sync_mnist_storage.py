"""Build time, size on disk and read speed of SyncMNIST per video encoding.

    python experiments/bench_sync_mnist_storage.py --config=digits3_small \
        --data_dir=/tmp/sync_mnist_bench

Builds the config once per `video_encoding` (zlib / bytes / png) into its own
data dir, then reads the whole train split a few times (tf.data, batch 64,
best of the repeats) and prints a markdown table.
"""
from __future__ import annotations

import dataclasses
import os
import time

from absl import app
from absl import flags
import tensorflow_datasets as tfds

from rstg_datasets.sync_mnist import sync_mnist



def _define_flags():
  """Flags exist only when this file runs as a script, so importing it never clashes."""
  flags.DEFINE_string("config", "digits3_small", "SyncMNIST config to build.")
  flags.DEFINE_string("data_dir", "/tmp/sync_mnist_bench", "Scratch data dir root.")
  flags.DEFINE_list("encodings", list(sync_mnist.VIDEO_ENCODINGS), "Video encodings to compare.")
  flags.DEFINE_integer("repeats", 3, "Reads of the train split per encoding.")

def _dir_bytes(path) -> int:
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(path) for f in files)


def _read_videos_per_s(builder, repeats: int) -> float:
  best = 0.0
  for _ in range(repeats):
    ds = builder.as_dataset(split="train").batch(64).prefetch(2)
    start = time.perf_counter()
    count = sum(batch["video"].shape[0] for batch in tfds.as_numpy(ds))
    best = max(best, count / (time.perf_counter() - start))
  return best


def main(_):
  flags_ = flags.FLAGS
  base = next(c for c in sync_mnist.SyncMnist.BUILDER_CONFIGS if c.name == flags_.config)
  rows = []
  for encoding in flags_.encodings:
    config = dataclasses.replace(base, name=f"{base.name}_{encoding}",
                                 video_encoding=encoding)
    builder = tfds.builder("sync_mnist", config=config,
                           data_dir=os.path.join(flags_.data_dir, encoding))
    start = time.perf_counter()
    builder.download_and_prepare()
    build_s = time.perf_counter() - start
    rows.append((encoding, build_s, _dir_bytes(builder.data_dir) / 2**20,
                 _read_videos_per_s(builder, flags_.repeats)))
  print(f"\nsync_mnist/{base.name}: {base.num_train} train + {base.num_test} test videos,"
        f" {os.cpu_count()} CPUs")
  print("| video_encoding | build s | MiB on disk | read train videos/s |")
  print("|---|---|---|---|")
  for encoding, build_s, mib, speed in rows:
    print(f"| {encoding} | {build_s:.1f} | {mib:.1f} | {speed:.0f} |")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
