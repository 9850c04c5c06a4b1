"""Crop windows, frame decoding, brightness, normalisation, flip."""
from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from rstg_jax.data import video_augment as va


def _jpeg(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG", quality=95)
  return buffer.getvalue()


def test_central_and_diagonal_crop_windows_follow_the_spec():
  # Spec §10.2: top-left = size // 2 - 112.
  np.testing.assert_array_equal(va.central_crop_window(256, 341, 224).numpy(),
                                [128 - 112, 170 - 112, 224, 224])
  windows = va.diagonal_crop_windows(256, 455, 256, 11).numpy()
  np.testing.assert_array_equal(windows[:, 0], np.zeros(11))  # landscape: dl all 0
  np.testing.assert_array_equal(windows[:, 1], np.linspace(0, 455 - 256, 11).astype(int))
  portrait = va.diagonal_crop_windows(300, 260, 256, 3).numpy()
  np.testing.assert_array_equal(portrait[:, :2], [[0, 0], [22, 2], [44, 4]])  # joint sweep
  np.testing.assert_array_equal(va.diagonal_crop_windows(256, 341, 224, 1).numpy(),
                                va.central_crop_window(256, 341, 224).numpy()[None])


def test_random_crop_window_bounds_and_scale_jitter():
  sides = []
  for s in range(50):
    top, left, h, w = va.random_crop_window(100, 132, tf.constant([3, s]),
                                            scale_range=(0.5, 1.0)).numpy()
    assert 0 <= top <= 100 - h and 0 <= left <= 132 - w and h == w
    sides.append(h)
  assert min(sides) < 60 and max(sides) > 90  # side in [50, 100]
  fixed = va.random_crop_window(256, 341, tf.constant([1, 1])).numpy()
  assert tuple(fixed[2:]) == (224, 224)  # default = the paper's 224 crop of 256


def test_decode_frames_decodes_the_sampled_frames_and_window():
  frames = [np.full((40, 60, 3), 20 * t, np.uint8) for t in range(6)]
  frames[4][10:20, 30:50] = 255
  encoded = tf.constant([_jpeg(f) for f in frames])
  clip = va.decode_frames(encoded, tf.constant([5, 1, 1, 4])).numpy()
  assert clip.shape == (4, 40, 60, 3)
  np.testing.assert_allclose(clip[:, 0, 0, 0], [100, 20, 20, 80], atol=2)
  cropped = va.decode_frames(encoded, tf.constant([4]), tf.constant([10, 30, 10, 20])).numpy()
  assert cropped.shape == (1, 10, 20, 3) and cropped.min() > 240


def test_brightness_is_one_saturating_delta_per_clip():
  clip = tf.constant(np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 100, 250)]))
  out = va.random_brightness(clip, tf.constant([0, 5]), 0.1).numpy()
  delta = out[1, 0, 0, 0] - 100
  assert 0 < abs(delta) <= 25.5
  np.testing.assert_allclose(out[0], np.clip(delta, 0, 255), atol=1e-4)
  np.testing.assert_allclose(out[2], np.clip(250 + delta, 0, 255), atol=1e-4)  # saturates
  deltas = {float(va.random_brightness(clip, tf.constant([0, s]), 0.1).numpy()[1, 0, 0, 0])
            for s in range(10)}
  assert len(deltas) == 10


def test_normalisation_and_flip_with_label_swap():
  np.testing.assert_allclose(va.normalize(tf.constant([0, 114.75, 255.0])).numpy(),
                             [-2.0, 0.0, (255 - 114.75) / 57.375])
  np.testing.assert_allclose(np.asarray(va.normalize_on_device(np.array([0, 255], np.uint8))),
                             [-2.0, (255 - 114.75) / 57.375], rtol=1e-6)
  clip = tf.constant(np.arange(2 * 1 * 3 * 1).reshape(2, 1, 3, 1).astype(np.float32))
  table = np.array([0, 2, 1, 3], np.int32)
  flipped = 0
  for s in range(20):
    out, label = va.random_flip(clip, tf.constant(1), tf.constant([9, s]), 0.5, table)
    if int(label) == 2:
      flipped += 1
      np.testing.assert_array_equal(out.numpy(), clip.numpy()[:, :, ::-1])
    else:
      assert int(label) == 1
      np.testing.assert_array_equal(out.numpy(), clip.numpy())
  assert 0 < flipped < 20
  out, label = va.random_flip(clip, tf.constant(-1), tf.constant([9, 0]), 1.0, table)
  assert int(label) == -1
