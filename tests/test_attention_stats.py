"""experiments/syncmnist/attention_stats.py: attention given to each digit, from the
digit boxes and the graph's node regions."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

_PATH = pathlib.Path(__file__).resolve().parents[1] / "experiments/syncmnist/attention_stats.py"


def _module():
  spec = importlib.util.spec_from_file_location("attention_stats", _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_uniform_attention_favours_no_digit_and_a_focused_one_finds_its_digit():
  stats = _module()
  # Two frames, three digits: top-left corner, the middle, the bottom-right corner.
  coords = np.array([[[0, 0], [50, 50], [72, 72]]] * 2)
  shares = stats.digit_shares(coords, (3, 2, 1))                   # [T, 14, 3]
  assert shares.shape == (2, 14, 3)
  # Node 0 is the top-left 3x3 cell (33 px): it holds the first digit whole.
  np.testing.assert_allclose(shares[0, 0], [1.0, 0.0, 0.0])
  # The whole-frame node holds every digit whole; the 3x3 grid's 99 px leave the
  # last canvas row and column out, which the corner digit touches.
  np.testing.assert_allclose(shares[0, 13], [1.0, 1.0, 1.0])
  np.testing.assert_allclose(shares[0, :9].sum(0), [1.0, 1.0, 27 * 27 / 784])
  np.testing.assert_allclose(shares[0, 9:13].sum(0), [1.0, 1.0, 1.0])

  uniform = np.full((1, 2, 14, 14), 1 / 14)                         # [K, T, N, N]
  np.testing.assert_allclose(stats.digit_attention(uniform, shares)[0, :2], 3 / 14)
  focused = np.zeros((2, 2, 14, 14))
  focused[0, :, :, 0] = 1.0            # iteration 1: every receiver looks at node 0
  focused[1, :, :, 13] = 1.0           # iteration 2: at the whole frame
  a = stats.digit_attention(focused, shares)
  np.testing.assert_allclose(a, [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])


def test_summary_compares_the_pair_with_the_third_digit():
  stats = _module()
  # Video 1: the third digit gets the least attention; video 2: digit 1 does.
  a = np.array([[[0.4, 0.3, 0.2]], [[0.1, 0.05, 0.2]]])            # [V, K, n]
  (row,) = stats.summarise(a)
  assert row["iteration"] == 1
  np.testing.assert_allclose([row["sync"], row["odd"]], [0.2125, 0.2])
  np.testing.assert_allclose(row["ratio"], 0.2125 / 0.2)
  assert row["pair_found"] == 0.5
