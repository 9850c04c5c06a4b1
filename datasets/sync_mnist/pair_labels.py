"""SyncMNIST class ids: the enumeration of unordered digit pairs (spec §10.1 step 2).

Pairs {i, j} with i > j are numbered in the order i = 0..9 (outer), j = 0..i-1
(inner), so label(i, j) = i (i - 1) / 2 + j: (1,0)->0, (2,0)->1, (2,1)->2, ...,
(9,8)->44. Label 45 means "no synchronous pair" (every digit moves on its own).
"""
from __future__ import annotations

from typing import Any

import numpy as np

NUM_DIGIT_CLASSES = 10
NUM_PAIR_CLASSES = NUM_DIGIT_CLASSES * (NUM_DIGIT_CLASSES - 1) // 2  # 45
NO_SYNC_LABEL = NUM_PAIR_CLASSES  # 45
NUM_CLASSES = NUM_PAIR_CLASSES + 1  # 46 (spec §9.4)


def pair_label(a: int, b: int) -> int:
  """Class id of the unordered pair of distinct digit classes {a, b}."""
  a, b = int(a), int(b)
  if a == b or not (0 <= a < NUM_DIGIT_CLASSES and 0 <= b < NUM_DIGIT_CLASSES):
    raise ValueError(f"pair_label needs two distinct digits in 0..9, got ({a}, {b})")
  return int(pair_label_array(a, b))


def pair_label_array(a: Any, b: Any, xp: Any = np) -> Any:
  """`pair_label` elementwise over arrays of distinct digit classes (unchecked).

  `xp` is the array module (numpy, or jax.numpy inside jit).
  """
  i, j = xp.maximum(a, b), xp.minimum(a, b)
  return i * (i - 1) // 2 + j


def label_pair(label: int) -> tuple[int, int] | None:
  """Inverse of `pair_label`: (low digit, high digit), or None for label 45."""
  label = int(label)
  if label == NO_SYNC_LABEL:
    return None
  if not 0 <= label < NO_SYNC_LABEL:
    raise ValueError(f"SyncMNIST label must be in 0..{NO_SYNC_LABEL}, got {label}")
  i = 1
  while (i + 1) * i // 2 <= label:
    i += 1
  return label - i * (i - 1) // 2, i


def label_names() -> list[str]:
  """Names in label-id order: "0-1", "0-2", "1-2", "0-3", ..., "8-9", "no_sync"."""
  names = []
  for label in range(NUM_PAIR_CLASSES):
    low, high = label_pair(label)
    names.append(f"{low}-{high}")
  return names + ["no_sync"]
