"""Class-name utilities: checkpoint class order and left/right class pairs.

Label ids of the builders follow the official labels file (v1: line order of
`something-something-v1-labels.csv`; v2: the ids of
`something-something-v2-labels.json`). The original RSTG checkpoints order their
174 classifier rows differently (neither alphabetical nor the labels-file
order; spec §10.2). The order is shipped as package data,
`ssv1_class_order_of_original_checkpoints.txt` (line k = checkpoint row k), and
the two orders are matched **by name** so that no id is ever guessed.
"""
from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Sequence

import numpy as np

CHECKPOINT_ORDER_FILE = "ssv1_class_order_of_original_checkpoints.txt"


@functools.cache
def _checkpoint_class_names() -> tuple[str, ...]:
  text = (importlib.resources.files(__package__) / CHECKPOINT_ORDER_FILE).read_text(
      encoding="utf-8")
  return tuple(line.strip() for line in text.splitlines() if line.strip())


def checkpoint_class_names() -> list[str]:
  """The 174 v1 class names in the row order of the original checkpoints."""
  return list(_checkpoint_class_names())


def _match_by_name(names_from: Sequence[str], names_to: Sequence[str],
                   what_from: str, what_to: str) -> np.ndarray:
  index_to = {name.strip(): i for i, name in enumerate(names_to)}
  missing = [n for n in names_from if n.strip() not in index_to]
  if missing or len(names_from) != len(names_to):
    raise ValueError(
        f"Cannot match {what_from} ({len(names_from)} names) to {what_to} "
        f"({len(names_to)} names) by name; names of {what_from} not found in "
        f"{what_to}: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
  perm = np.array([index_to[n.strip()] for n in names_from], dtype=np.int32)
  if len(set(perm.tolist())) != len(perm):
    raise ValueError(f"{what_from} has duplicated class names")
  return perm


def checkpoint_rows_for_labels(label_names: Sequence[str]) -> np.ndarray:
  """Checkpoint row of each label id: `rows[label_id] = checkpoint_row`.

  Use it to bring checkpoint classifier weights into label-id order:
  `kernel_labels = kernel_ckpt[:, rows]`, `bias_labels = bias_ckpt[rows]`, and
  logits of a checkpoint-ordered model: `logits_labels = logits_ckpt[..., rows]`.

  Args:
    label_names: class names in label-id order (e.g.
      `builder.info.features['label'].names`).

  Returns:
    int32 [num_classes].

  Raises:
    ValueError: when a name is not among the checkpoint's 174 names.
  """
  return _match_by_name(label_names, _checkpoint_class_names(),
                        "the dataset's class names", "the checkpoint class order")


def labels_for_checkpoint_rows(label_names: Sequence[str]) -> np.ndarray:
  """Label id of each checkpoint row: `ids[checkpoint_row] = label_id`.

  The inverse permutation of `checkpoint_rows_for_labels`.
  """
  return _match_by_name(_checkpoint_class_names(), label_names,
                        "the checkpoint class order", "the dataset's class names")


_LEFT_RIGHT = re.compile(r"\b(left|right)\b")


def _swap_left_right(name: str) -> str:
  return _LEFT_RIGHT.sub(lambda m: "right" if m.group(1) == "left" else "left", name)


def left_right_pairs(label_names: Sequence[str]) -> list[tuple[int, int]]:
  """Pairs (i, j), i < j, of classes whose names differ by swapping left/right.

  A horizontal flip turns "Pushing something from left to right" into
  "Pushing something from right to left"; a name whose swapped form is not a
  class (e.g. "... pulling it right out ...", where "right" is no direction)
  keeps its label.
  """
  index = {name: i for i, name in enumerate(label_names)}
  pairs = set()
  for i, name in enumerate(label_names):
    swapped = _swap_left_right(name)
    j = index.get(swapped)
    if j is not None and j != i:
      pairs.add((min(i, j), max(i, j)))
  return sorted(pairs)


def flip_label_map(label_names: Sequence[str]) -> np.ndarray:
  """Label after a horizontal flip: identity except left/right pairs swapped.

  Returns:
    int32 [num_classes], `flipped_label = table[label]`.
  """
  table = np.arange(len(label_names), dtype=np.int32)
  for i, j in left_right_pairs(label_names):
    table[i], table[j] = j, i
  return table
