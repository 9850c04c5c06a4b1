"""Builds a SyncMNIST config from the command line.

    python -m rstg_datasets.sync_mnist --config=digits3_small   # into $TFDS_DATA_DIR
    python -m rstg_datasets.sync_mnist --config=digits3_small --data_dir=~/tensorflow_datasets
    python -m rstg_datasets.sync_mnist --config=digits3_idx --data_dir=... --manual_dir=/path/to/mnist_idx
"""
from __future__ import annotations

import os

from absl import app
from absl import flags

import rstg_datasets
from rstg_datasets.sync_mnist import build

_CONFIG = flags.DEFINE_string("config", "digits3_small", "SyncMNIST config to build.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data dir root (default: $TFDS_DATA_DIR, else "
    "~/tensorflow_datasets, as the training job).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None,
                                  "Folder of MNIST IDX files (the *_idx configs).")


def main(argv):
  del argv
  builder = build.build_if_missing(
      _CONFIG.value, rstg_datasets.resolve_data_dir(_DATA_DIR.value),
      manual_dir=os.path.expanduser(_MANUAL_DIR.value) if _MANUAL_DIR.value else None)
  print(f"{builder.info.full_name} ready in {builder.data_dir}: "
        + ", ".join(f"{name} {split.num_examples}" for name, split in builder.info.splits.items()))


if __name__ == "__main__":
  app.run(main)
