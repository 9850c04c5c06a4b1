"""Build a SyncMNIST config on demand (what `rstg_jax.main` calls before training)."""
from __future__ import annotations

import os
import time

from absl import logging
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from rstg_datasets.sync_mnist import sync_mnist  # pylint: disable=unused-import  (registers the builder)


def build_if_missing(config_name: str, data_dir: str | os.PathLike, *,
                     manual_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
  """Returns the `sync_mnist/<config_name>` builder, generating it first if absent.

  Args:
    config_name: a SyncMnist config, e.g. "digits3_small" or "digits3_tiny".
    data_dir: tfds data dir root; the data lands in
      <data_dir>/sync_mnist/<config_name>/<version>.
    manual_dir: folder of MNIST IDX files, for the "*_idx" configs.

  Not safe to call from several processes at once on a shared file system:
  in a multi-host job call it on process 0 and let the others wait (e.g.
  `multihost_utils.sync_global_devices`) before they open the builder.
  """
  try:
    builder = tfds.builder(f"sync_mnist/{config_name}", data_dir=os.fspath(data_dir))
  except ValueError as e:
    names = [c.name for c in sync_mnist.SyncMnist.BUILDER_CONFIGS]
    raise ValueError(
        f"Unknown SyncMNIST config {config_name!r}; known configs: {names}") from e
  if builder.is_prepared():
    logging.info("SyncMNIST %s found in %s", config_name, builder.data_dir)
    return builder
  config = builder.builder_config
  logging.info(
      "Building SyncMNIST %s (%d digits, %d train / %d test videos, digits from %s)"
      " into %s", config_name, config.num_digits, config.num_train, config.num_test,
      config.digit_source, builder.data_dir)
  start = time.perf_counter()
  download_config = tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir) if manual_dir is not None else None)
  # No tfds progress bars during this build: its shuffle bar takes its ETA from
  # the generation phase (hours, for a build of minutes); the lines above and
  # below say when the build starts and ends.
  bars_were_on = getattr(tqdm_utils, "_active", True)
  tfds.display_progress_bar(False)
  try:
    builder.download_and_prepare(download_config=download_config)
  finally:
    tfds.display_progress_bar(bars_were_on)
  logging.info("Built SyncMNIST %s in %.1f s", config_name, time.perf_counter() - start)
  return builder
