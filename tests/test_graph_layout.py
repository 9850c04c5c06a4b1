"""Graph layout constants and the area-resize operator against the spec's printed values."""
import numpy as np
import pytest

from rstg_jax.models.graph import area_resize, graph_layout

# Spec §2.3, row i lists the neighbours of node i ("." = 0), copied as text.
SPEC_ADJACENCY = """
 . 1 . 1 . . . . . 1  .  .  .  1
 1 . 1 . 1 . . . . 1  1  .  .  1
 . 1 . . . 1 . . . .  1  .  .  1
 1 . . . 1 . 1 . . 1  .  1  .  1
 . 1 . 1 . 1 . 1 . 1  1  1  1  1
 . . 1 . 1 . . . 1 .  1  .  1  1
 . . . 1 . . . 1 . .  .  1  .  1
 . . . . 1 . 1 . 1 .  .  1  1  1
 . . . . . 1 . 1 . .  .  .  1  1
 1 1 . 1 1 . . . . .  1  1  .  1
 . 1 1 . 1 1 . . . 1  .  .  1  1
 . . . 1 1 . 1 1 . 1  .  .  1  1
 . . . . 1 1 . 1 1 .  1  1  .  1
 1 1 1 1 1 1 1 1 1 1  1  1  1  .
"""


def spec_matrix():
  rows = [line.split() for line in SPEC_ADJACENCY.strip().splitlines()]
  return np.array([[0 if v == "." else int(v) for v in row] for row in rows], np.float32)


@pytest.mark.parametrize("image_dim", [224, 64, 256])
def test_adjacency_equals_spec_matrix(image_dim):
  a = graph_layout.adjacency(3, image_dim)
  np.testing.assert_array_equal(a, spec_matrix())
  assert a.sum() / 2 == 45
  np.testing.assert_array_equal(a.sum(1), [4, 6, 4, 6, 9, 6, 4, 6, 4, 7, 7, 7, 7, 13])


def test_region_boxes_follow_spec_patch_rule():
  boxes = graph_layout.region_boxes((3, 2, 1), 224)
  assert len(boxes) == 14
  assert boxes[0] == (0, 74, 0, 74) and boxes[2] == (148, 222, 0, 74)
  assert boxes[3] == (0, 74, 74, 148)  # row-major: node 3 is row 1, column 0
  assert boxes[9] == (0, 112, 0, 112) and boxes[13] == (0, 224, 0, 224)


def test_corner_touching_boxes_are_not_connected():
  a = graph_layout.Box(0, 10, 0, 10)
  assert not graph_layout.boxes_connected(a, graph_layout.Box(10, 20, 10, 20))
  assert graph_layout.boxes_connected(a, graph_layout.Box(10, 20, 0, 10))


def test_positional_embedding_values():
  pe = graph_layout.positional_embedding(3, 6)
  assert pe.shape == (14, 36)
  m0 = pe[0].reshape(6, 6)  # 3x3 scale, node (0, 0): a 2x2 block of 0.93941
  np.testing.assert_allclose(m0[:2, :2], 0.93941, atol=1e-5)
  assert np.count_nonzero(m0) == 4
  m4 = pe[4].reshape(6, 6)  # centre cell sits at rows/cols 2..3
  np.testing.assert_allclose(m4[2:4, 2:4], 0.93941, atol=1e-5)
  g3 = np.array([0.88250, 1.0, 0.88250])
  m12 = pe[12].reshape(6, 6)  # 2x2 scale, node (1, 1): rows/cols 3..5
  np.testing.assert_allclose(m12[3:, 3:], np.outer(g3, g3), atol=1e-5)
  g6 = np.array([0.45783, 0.75484, 0.96923, 0.96923, 0.75484, 0.45783])
  np.testing.assert_allclose(pe[13].reshape(6, 6), np.outer(g6, g6), atol=1e-5)


def test_area_resize_14_to_3_matches_spec_example():
  w = area_resize.area_resize_matrix(14, 3) * 14
  np.testing.assert_allclose(w[0], [3, 3, 3, 3, 2] + [0] * 9, atol=1e-12)
  np.testing.assert_allclose(w[1], [0] * 4 + [1, 3, 3, 3, 3, 1] + [0] * 4, atol=1e-12)
  np.testing.assert_allclose(w[2], [0] * 9 + [2, 3, 3, 3, 3], atol=1e-12)


def test_area_resize_28_to_3_matches_spec_example():
  w = area_resize.area_resize_matrix(28, 3) * 28
  np.testing.assert_allclose(w[0], [3] * 9 + [1] + [0] * 18, atol=1e-12)
  np.testing.assert_allclose(w[1], [0] * 9 + [2] + [3] * 8 + [2] + [0] * 9, atol=1e-12)


def test_area_upsample_3_to_14_and_3_to_16_match_spec_example():
  w = area_resize.area_resize_matrix(3, 14)
  for px in range(4):
    np.testing.assert_allclose(w[px], [1, 0, 0])
  np.testing.assert_allclose(w[4], [2 / 3, 1 / 3, 0])
  np.testing.assert_allclose(w[9], [0, 1 / 3, 2 / 3])
  np.testing.assert_allclose(w[13], [0, 0, 1])
  w16 = area_resize.area_resize_matrix(3, 16)
  np.testing.assert_allclose(w16[5], [1 / 3, 2 / 3, 0])
  np.testing.assert_allclose(w16[10], [0, 2 / 3, 1 / 3])


@pytest.mark.parametrize("n_in,n_out", [(6, 3), (6, 2), (14, 2), (16, 2), (28, 2), (32, 2),
                                        (14, 1)])
def test_area_resize_is_average_pooling_when_sizes_divide(n_in, n_out):
  x = np.random.default_rng(0).normal(size=(2, n_in, n_in, 3)).astype(np.float32)
  got = np.asarray(area_resize.area_resize(x, n_out, n_out))
  k = n_in // n_out
  want = x.reshape(2, n_out, k, n_out, k, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("n_in,n_out", [(14, 3), (3, 14), (28, 3), (5, 7), (1, 4)])
def test_area_resize_rows_sum_to_one(n_in, n_out):
  np.testing.assert_allclose(area_resize.area_resize_matrix(n_in, n_out).sum(1), 1.0)


def test_pool_to_nodes_order_and_shape():
  x = np.arange(6 * 6, dtype=np.float32).reshape(1, 6, 6, 1)
  nodes = np.asarray(area_resize.pool_to_nodes(x, (3, 2, 1)))
  assert nodes.shape == (1, 14, 1)
  # Node 1 is the top-middle 2x2 block of the 3x3 grid; node 13 the whole map.
  np.testing.assert_allclose(nodes[0, 1, 0], x[0, 0:2, 2:4, 0].mean())
  np.testing.assert_allclose(nodes[0, 11, 0], x[0, 3:6, 0:3, 0].mean())
  np.testing.assert_allclose(nodes[0, 13, 0], x.mean())
