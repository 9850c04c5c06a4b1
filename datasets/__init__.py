"""tfds builders of rstg_jax, installed as the package `rstg_datasets`."""
from __future__ import annotations

import os

DEFAULT_DATA_DIR = "~/tensorflow_datasets"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str:
  """`data_dir` if given, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (tfds's
  own rule), as an absolute path."""
  chosen = os.fspath(data_dir) if data_dir else os.environ.get("TFDS_DATA_DIR",
                                                               DEFAULT_DATA_DIR)
  return os.path.abspath(os.path.expanduser(chosen))
