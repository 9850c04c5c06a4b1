"""How much of the synchrony label survives pooling to the graph's 14 nodes?

  python experiments/syncmnist/node_probe.py --config=sync3_cpu32 --num_train=20000

For SyncMNIST videos of a builder config (generated here, no tfds), computes
three idealised, noise-free inputs from the ground truth and fits the same
small MLP (scikit-learn) on each to predict which pair of the three digits
moves together (synchronous videos only; chance 1/3):

  nodes      per frame, each digit class's pixel mass inside each of the 14
             node regions (scales 3x3, 2x2, 1x1 of the frame): what the graph
             could at best know if the backbone were a perfect digit detector
             followed by the graph's area pooling, [T, 14, 3]
  centroids  per frame, each digit class's centre (row, col), [T, 3, 2]:
             positions at full resolution
  steps      per frame, each digit class's move (row, col) from the frame
             before, [T-1, 3, 2]: the motion itself
  nodes+xy   `nodes` plus, per node and class, the mass-weighted mean row and
             column inside the node's region, [T, 14, 3, 3]: what pooled
             features can know when the map they pool carries positions

A probe that fails on `nodes` but solves `centroids` says the pooling to
nodes, not the graph, limits what any node-based model can learn. Takes about
a minute on one core.
"""
from __future__ import annotations

import time

from absl import app
from absl import flags
import numpy as np

_CONFIG = flags.DEFINE_string("config", "sync3_cpu32", "sync_mnist builder config.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 20_000, "Training videos for the probe.")
_NUM_TEST = flags.DEFINE_integer("num_test", 2_000, "Test videos for the probe.")
_HIDDEN = flags.DEFINE_integer("hidden", 256, "Width of the probe's two hidden layers.")


def features(config, split: str, count: int):
  """(nodes [V, T*14*3], centroids [V, T*3*2], steps [V, (T-1)*3*2],
  nodes+xy [V, T*14*3*3], pair [V]) of the synchronous videos among the first
  `count` of `split`."""
  from rstg_datasets.sync_mnist import digit_sources, generator  # pylint: disable=g-import-not-at-top
  from rstg_jax.models.graph import graph_layout  # pylint: disable=g-import-not-at-top
  pool = digit_sources.load_digit_pool(config.digit_source, split)
  size = generator.CANVAS_SIZE
  boxes = graph_layout.region_boxes((3, 2, 1), size)
  # Node membership of every canvas pixel: [14, 100, 100].
  member = np.zeros((len(boxes), size, size), np.float32)
  # Position inside the node's region, -1 .. 1 along rows and columns.
  inside = np.zeros((2, len(boxes), size, size), np.float32)
  for n, b in enumerate(boxes):
    member[n, b.y0:b.y1, b.x0:b.x1] = 1.0
    inside[0, n, b.y0:b.y1, b.x0:b.x1] = np.linspace(-1, 1, b.y1 - b.y0)[:, None]
    inside[1, n, b.y0:b.y1, b.x0:b.x1] = np.linspace(-1, 1, b.x1 - b.x0)[None, :]
  weights = np.concatenate([member[None], inside * member[None]]).reshape(3 * len(boxes), -1)
  classes = list(config.digit_classes)
  nodes, cents, moments, pairs = [], [], [], []
  for index in range(count):
    spec = generator.sample_video_spec(
        pool, index, config.num_digits, generator.video_rng(config.seed, split, index),
        digit_classes=config.digit_classes, max_step=config.max_step)
    if not spec.is_sync:
      continue
    order = [list(spec.digits).index(c) for c in classes]  # by class, not by role
    images = pool.images[spec.digit_indices].astype(np.float32) / 255.0
    d = generator.DIGIT_SIZE
    rows = np.arange(d, dtype=np.float32)[:, None]
    cols = np.arange(d, dtype=np.float32)[None, :]
    video_nodes = np.zeros((spec.coords.shape[0], 3 * len(boxes), len(classes)), np.float32)
    video_cents = np.zeros((spec.coords.shape[0], len(classes), 2), np.float32)
    for j, k in enumerate(order):
      img = images[k]
      mass = img.sum()
      cr, cc = (img * rows).sum() / mass, (img * cols).sum() / mass
      for t, (r, c) in enumerate(spec.coords[:, k]):
        canvas = np.zeros((size, size), np.float32)
        canvas[r:r + d, c:c + d] = img
        video_nodes[t, :, j] = weights @ canvas.ravel() / mass
        video_cents[t, j] = (r + cr, c + cc)
    nodes.append(video_nodes[:, :len(boxes)].ravel())
    moments.append(video_nodes.ravel())
    cents.append(video_cents)
    # Which pair of the fixed class order moves together: 0 = (c0, c1), 1 = (c0, c2), 2 = (c1, c2).
    pair = tuple(sorted(classes.index(int(x)) for x in spec.digits[:2]))
    pairs.append({(0, 1): 0, (0, 2): 1, (1, 2): 2}[pair])
  cents = np.stack(cents)
  steps = np.diff(cents, axis=1)
  return (np.stack(nodes), cents.reshape(len(cents), -1) / size,
          steps.reshape(len(steps), -1) / config.max_step, np.stack(moments),
          np.asarray(pairs))


def main(argv):
  del argv
  from sklearn.neural_network import MLPClassifier  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  from rstg_datasets.sync_mnist import sync_mnist  # pylint: disable=g-import-not-at-top
  try:
    config = sync_mnist.SyncMnist.config_named(_CONFIG.value)
  except ValueError as e:
    raise SystemExit(f"--config: {e}") from None
  if len(config.digit_classes) != 3 or config.num_digits != 3:
    raise SystemExit(f"--config={_CONFIG.value}: the probe needs 3 digits of 3 fixed classes")
  t0 = time.time()
  train = features(config, "train", _NUM_TRAIN.value)
  test = features(config, "test", _NUM_TEST.value)
  print(f"{config.name}: {len(train[-1])} train / {len(test[-1])} test synchronous videos "
        f"({time.time() - t0:.0f} s to compute)")
  print("| input | dims | probe train accuracy | probe test accuracy |")
  print("|---|---|---|---|")
  for i, name in enumerate(("nodes", "centroids", "steps", "nodes+xy")):
    scaler = StandardScaler().fit(train[i])
    probe = MLPClassifier((_HIDDEN.value, _HIDDEN.value), max_iter=200,
                          early_stopping=True, random_state=0)
    probe.fit(scaler.transform(train[i]), train[-1])
    print(f"| {name} | {train[i].shape[1]} | "
          f"{probe.score(scaler.transform(train[i]), train[-1]):.3f} | "
          f"{probe.score(scaler.transform(test[i]), test[-1]):.3f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
