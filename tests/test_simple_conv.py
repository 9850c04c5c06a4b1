"""SimpleConv (spec §8.1) against an independent lax reference."""
from __future__ import annotations

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from rstg_jax.models.backbones.simple_conv import SimpleConv, max_pool_2x2


def _reference(params, video, scale=1.0):
  """Per frame: 3 x (VALID 3x3 conv + bias, ReLU, 2x2/2 VALID max-pool), pixels x scale."""
  b, t = video.shape[:2]
  x = video.reshape((b * t,) + video.shape[2:]).astype(jnp.float32) * scale
  for i in (1, 2, 3):
    p = params[f"conv{i}"]
    x = lax.conv_general_dilated(x, p["kernel"], (1, 1), "VALID",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jnp.maximum(x + p["bias"], 0.0)
    x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
  return x.reshape((b, t) + x.shape[1:])


def test_shapes_and_values_match_reference():
  video = np.random.RandomState(0).randint(0, 256, (2, 4, 64, 64, 1)).astype(np.uint8)
  model = SimpleConv(width=8)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), video)
  apply = jax.jit(model.apply)
  out = apply(variables, video)
  assert out.shape == (2, 4, 6, 6, 8)
  ref = jax.jit(_reference)(variables["params"], video)
  # Raw 0..255 inputs give large activations: compare relative to their scale.
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4 * float(jnp.max(ref)))
  # input_scale multiplies the pixels before the first conv. Non-zero biases
  # make that differ from scaling the output (with zero biases, as at init,
  # the net is positively homogeneous and the two agree).
  biased = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.1 if path[-1].key == "bias" else x, variables)
  scaled = jax.jit(SimpleConv(width=8, input_scale=1 / 255).apply)(biased, video)
  ref_scaled = _reference(biased["params"], video, 1 / 255)
  np.testing.assert_allclose(scaled, ref_scaled, rtol=1e-5, atol=1e-5)
  assert not np.allclose(scaled, apply(biased, video) / 255, atol=1e-3)
  # Frames are processed independently: changing frame 2 changes only frame 2.
  video2 = video.copy()
  video2[:, 2] = 0
  out2 = apply(variables, video2)
  changed = np.any(np.asarray(out2 != out), axis=(0, 2, 3, 4))
  assert changed.tolist() == [False, False, True, False]


def test_max_pool_matches_flax_on_odd_and_even_sizes():
  for size in (29, 12):
    x = np.random.RandomState(size).randn(2, size, size, 3).astype(np.float32)
    np.testing.assert_array_equal(
        max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID"))


def test_rejects_non_video_input():
  with pytest.raises(ValueError, match=r"\[B, T, H, W, C\]"):
    SimpleConv(width=4).init(jax.random.PRNGKey(0), jnp.zeros((2, 64, 64, 1)))
