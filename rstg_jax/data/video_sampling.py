"""Which frames of a video a clip uses (temporal sampling), as tf.data ops.

All functions take the video's frame count `num_frames` (a scalar tensor, any
value >= 1) and return int32 frame indices in [0, num_frames - 1]; short
videos repeat frames.

- `uniform_indices`: the paper's sampling (spec §9.2, §10.2):
  `int(linspace(0, n - 1, T))`, computed in float64 exactly as NumPy does.
- `temporal_view_indices`: K shifted uniform samplings for multi-view
  evaluation; view k starts at `round(k / K * n / T)` (K = 2 gives the paper's
  second sampling, shifted by `round(0.5 * n / T)`, spec §9.3), clipped to n - 1.
- `segment_indices`: T near-equal segments with integer bounds
  floor(i * n / T), one frame per segment, at a random position (training,
  with a stateless seed) or at the segment centre.
"""
from __future__ import annotations

import tensorflow as tf


def _as_count(num_frames) -> tf.Tensor:
  n = tf.cast(num_frames, tf.int64)
  with tf.control_dependencies(
      [tf.debugging.assert_positive(n, message="a video has no frames")]):
    return tf.identity(n)


def shifted_uniform_indices(num_frames, num_samples: int, start) -> tf.Tensor:
  """`int(linspace(start, n - 1 + start, T))` clipped to n - 1; int32 [T]."""
  n = _as_count(num_frames)
  start = tf.cast(start, tf.float64)
  # float64 linspace: start + i * step, last = stop (same formula as NumPy), so
  # truncation matches `np.linspace(...).astype(int)` of the original code.
  positions = tf.linspace(start, start + tf.cast(n - 1, tf.float64), num_samples)
  indices = tf.cast(positions, tf.int64)  # truncation; positions are >= 0
  return tf.cast(tf.minimum(indices, n - 1), tf.int32)


def uniform_indices(num_frames, num_samples: int) -> tf.Tensor:
  """The paper's `int(linspace(0, n - 1, T))`; int32 [T]."""
  return shifted_uniform_indices(num_frames, num_samples, 0)


def temporal_view_starts(num_frames, num_samples: int, num_views: int) -> tf.Tensor:
  """Start of each temporal view: `round(k / K * n / T)`, k = 0..K-1; [K] int64.

  Rounding is half-to-even, like Python 3's `round` of the original code.
  """
  n = tf.cast(_as_count(num_frames), tf.float64)
  k = tf.range(num_views, dtype=tf.float64)
  return tf.cast(tf.round(k / num_views * n / num_samples), tf.int64)


def temporal_view_indices(num_frames, num_samples: int, num_views: int) -> tf.Tensor:
  """Frame indices of K temporal views, view 0 = the uniform sampling; [K, T]."""
  starts = temporal_view_starts(num_frames, num_samples, num_views)
  return tf.stack([shifted_uniform_indices(num_frames, num_samples, starts[k])
                   for k in range(num_views)])


def segment_indices(num_frames, num_samples: int, seed=None) -> tf.Tensor:
  """One frame per each of T equal segments; int32 [T].

  Args:
    num_frames: frame count n.
    num_samples: T.
    seed: stateless seed (int tensor [2]) for a uniform random position in each
      segment (training); None for the segment centres (deterministic).
  """
  n = _as_count(num_frames)
  # Integer segment bounds floor(i * n / T): segments never overlap, so for
  # n >= T the indices are distinct and increasing.
  bounds = tf.range(num_samples + 1, dtype=tf.int64) * n // num_samples
  start = bounds[:-1]
  length = tf.maximum(bounds[1:] - start, 1)
  if seed is None:
    offset = length // 2
  else:
    u = tf.random.stateless_uniform([num_samples], seed=seed, dtype=tf.float64)
    offset = tf.minimum(tf.cast(tf.floor(u * tf.cast(length, tf.float64)), tf.int64),
                        length - 1)
  return tf.cast(tf.minimum(start + offset, n - 1), tf.int32)


def sample_indices(method: str, num_frames, num_samples: int, seed=None) -> tf.Tensor:
  """Dispatch: "uniform" (paper, no randomness) or "segment" (jitter if seeded)."""
  if method == "uniform":
    return uniform_indices(num_frames, num_samples)
  if method == "segment":
    return segment_indices(num_frames, num_samples, seed)
  raise ValueError(f"unknown temporal sampling {method!r}; use 'uniform' or 'segment'")
