"""Temporal sampling indices against NumPy transcriptions of spec §9.2/§9.3."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rstg_jax.data import video_sampling as vs


@pytest.mark.parametrize("n", [1, 2, 5, 17, 31, 32, 33, 47, 64, 101, 250])
def test_uniform_and_shifted_match_the_original_formulas(n):
  for t in (8, 16, 32):
    want = np.linspace(0, n - 1, t).astype(int)  # the original code
    np.testing.assert_array_equal(vs.uniform_indices(n, t).numpy(), want)
    start = round(0.5 * n / t)
    shifted = np.minimum(np.linspace(start, n - 1 + start, t).astype(int), n - 1)
    views = vs.temporal_view_indices(n, t, 2).numpy()
    np.testing.assert_array_equal(views[0], want)
    np.testing.assert_array_equal(views[1], shifted)


def test_short_video_repeats_frames_and_long_video_spans_it():
  np.testing.assert_array_equal(vs.uniform_indices(3, 8).numpy(), [0, 0, 0, 0, 1, 1, 1, 2])
  long = vs.uniform_indices(97, 32).numpy()
  assert long[0] == 0 and long[-1] == 96 and np.all(np.diff(long) >= 3)
  # Second sampling of a 97-frame video: shifted by round(0.5 * 97 / 32) = 2.
  assert vs.temporal_view_indices(97, 32, 2).numpy()[1][0] == 2


def test_segment_sampling_one_frame_per_segment_deterministic_per_seed():
  n, t = 50, 8
  centres = vs.segment_indices(n, t).numpy()
  bounds = np.arange(t + 1) * n // t
  np.testing.assert_array_equal(centres, bounds[:-1] + (bounds[1:] - bounds[:-1]) // 2)
  seen = set()
  for s in range(20):
    idx = vs.segment_indices(n, t, seed=tf.constant([7, s])).numpy()
    assert np.all(idx >= bounds[:-1]) and np.all(idx < bounds[1:])  # inside its segment
    np.testing.assert_array_equal(idx, vs.segment_indices(n, t, seed=tf.constant([7, s])).numpy())
    seen.add(tuple(idx))
  assert len(seen) > 10  # jitter actually moves frames
  short = vs.segment_indices(3, 8, seed=tf.constant([1, 2])).numpy()
  assert short.min() >= 0 and short.max() <= 2 and np.all(np.diff(short) >= 0)
  with pytest.raises(ValueError, match="unknown temporal sampling"):
    vs.sample_indices("random", 10, 4)
