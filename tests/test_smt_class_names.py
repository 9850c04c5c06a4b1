"""Label-id order vs the original checkpoints' class order; left/right pairs."""
from __future__ import annotations

import numpy as np

from rstg_datasets.smt_common import class_names


def test_checkpoint_permutation_matches_names_both_ways():
  ckpt = class_names.checkpoint_class_names()
  assert len(ckpt) == 174 and len(set(ckpt)) == 174
  assert ckpt[:2] == ["Holding something", "Turning something upside down"]  # spec §10.2
  rng = np.random.default_rng(0)
  official = [ckpt[i] for i in rng.permutation(174)]
  rows = class_names.checkpoint_rows_for_labels(official)
  assert all(ckpt[rows[i]] == official[i] for i in range(174))
  ids = class_names.labels_for_checkpoint_rows(official)
  assert all(official[ids[k]] == ckpt[k] for k in range(174))
  np.testing.assert_array_equal(rows[ids], np.arange(174))
  # Reordering checkpoint logits into label-id order.
  logits_ckpt = rng.normal(size=(3, 174))
  logits_labels = logits_ckpt[:, rows]
  k = ckpt.index("Poking a hole into some substance")
  np.testing.assert_array_equal(logits_labels[:, official.index(ckpt[k])], logits_ckpt[:, k])


def test_checkpoint_permutation_rejects_unknown_names():
  names = class_names.checkpoint_class_names()
  names[5] = "Juggling something"
  try:
    class_names.checkpoint_rows_for_labels(names)
  except ValueError as e:
    assert "Juggling something" in str(e)
  else:
    raise AssertionError("expected a ValueError")


def test_left_right_pairs_on_the_174_names():
  names = class_names.checkpoint_class_names()
  pairs = {(names[i], names[j]) for i, j in class_names.left_right_pairs(names)}
  expected = {
      ("Turning the camera left while filming something",
       "Turning the camera right while filming something"),
      ("Pushing something from left to right", "Pushing something from right to left"),
      ("Pulling something from right to left", "Pulling something from left to right"),
  }
  assert {tuple(sorted(p)) for p in pairs} == {tuple(sorted(p)) for p in expected}
  table = class_names.flip_label_map(names)
  right_out = names.index(
      "Plugging something into something but pulling it right out as you remove your hand")
  assert table[right_out] == right_out  # "right" there is no direction
  np.testing.assert_array_equal(table[table], np.arange(174))  # an involution
  assert np.sum(table != np.arange(174)) == 6
