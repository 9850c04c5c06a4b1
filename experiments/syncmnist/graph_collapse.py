"""Does the RSTG graph output collapse to a constant early in training?

  python experiments/syncmnist/graph_collapse.py --graph_lr_factor=1.0
  python experiments/syncmnist/graph_collapse.py --graph_lr_factor=0.1

Trains the SyncMNIST RSTG (configs/syncmnist_rstg.py:tiny with the settings of
compare.py: SimpleConv-16, graph 32, pixels / 255, Adam) for --steps steps on
random batches of the train split and prints, every --every steps, the spread
of the graph's output vector across 64 fixed videos (standard deviation over
videos, averaged over features) next to its mean magnitude, and the gradient
norms of backbone and graph. A spread that falls to ~0 means the graph emits
the same vector for every video: the classifier then only learns the label
prior and the backbone stops getting a gradient.
"""
from __future__ import annotations

import pathlib

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tensorflow_datasets as tfds

from rstg_configs import common as configs_common

_REPO = pathlib.Path(__file__).resolve().parents[2]
_COMBINE = flags.DEFINE_enum("combine", "serial", ["serial", "plus"], "Graph combination.")
_LR = flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate (constant).")
_GRAPH_LR_FACTOR = flags.DEFINE_float("graph_lr_factor", 1.0, "Graph learning-rate factor.")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps.")
_EVERY = flags.DEFINE_integer("every", 50, "Steps between reports.")
_DATA_CONFIG = flags.DEFINE_string("data_config", "digits3_small", "SyncMNIST builder config.")


def _config():
  config_file = _REPO / "configs" / "syncmnist_rstg.py"
  c = configs_common.load_config_file(config_file).get_config("tiny")
  c.model.backbone.width = 16
  c.model.backbone.input_scale = 1 / 255
  c.model.graph.node_feat_dim = c.model.graph.message_dims = 32
  c.model.combine = _COMBINE.value
  c.model.residual_norm = "none" if _COMBINE.value == "serial" else "LN"
  c.data.config = _DATA_CONFIG.value
  c.optimizer.schedule = "constant"
  c.optimizer.warmup_steps = 0
  c.optimizer.learning_rate = _LR.value
  c.optimizer.graph_lr_factor = _GRAPH_LR_FACTOR.value
  return c


def main(argv):
  del argv
  from rstg_jax.data.sync_mnist_input import load_builder  # pylint: disable=g-import-not-at-top
  from rstg_jax.models.classifiers.syncmnist_model import build_model  # pylint: disable=g-import-not-at-top
  from rstg_jax.train import optimizers  # pylint: disable=g-import-not-at-top
  c = _config()
  data = tfds.as_numpy(load_builder(c.data).as_dataset(split="train[:2000]", batch_size=-1))
  videos, labels = data["video"], data["label"].astype(np.int32)
  model = build_model(c.model)
  variables = model.init(jax.random.PRNGKey(c.seed), videos[:2], train=False)
  params, stats = variables["params"], variables["batch_stats"]
  tx = optimizers.make_optimizer(
      c.optimizer, optimizers.learning_rate_schedule(c.optimizer, _STEPS.value))
  opt_state = tx.init(params)

  def graph_vector(params, stats, x):
    """The RSTGGraph output [B, W] (before any residual norm)."""
    _, state = model.apply(
        {"params": params, "batch_stats": stats}, x, train=False,
        capture_intermediates=lambda m, _: m.name == "graph" and m.parent.name == "graph")
    return state["intermediates"]["graph"]["graph"]["__call__"][0]

  @jax.jit
  def step(params, stats, opt_state, x, y):
    def loss_fn(p):
      logits, updates = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                    mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    deltas, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, deltas), updates["batch_stats"], opt_state, loss,
            optax.global_norm(grads["backbone"]), optax.global_norm(grads["graph"]))

  probe = videos[:64]
  report = jax.jit(graph_vector)
  def spread(params, stats):
    v = report(params, stats, probe)
    return float(jnp.std(v, 0).mean()), float(jnp.abs(v).mean())

  print(f"combine={c.model.combine} lr={_LR.value:g} graph_lr_factor={_GRAPH_LR_FACTOR.value:g}")
  print("step  loss   graph-output spread / mean |value|   |grad| backbone  graph")
  s, m = spread(params, stats)
  print(f"{0:4d}  {'-':5s}  {s:10.3g} / {m:.3g}")
  rng = np.random.RandomState(0)
  for i in range(1, _STEPS.value + 1):
    idx = rng.randint(0, len(videos), c.batch_size)
    params, stats, opt_state, loss, g_backbone, g_graph = step(
        params, stats, opt_state, videos[idx], labels[idx])
    if i % _EVERY.value == 0:
      s, m = spread(params, stats)
      print(f"{i:4d}  {float(loss):.3f}  {s:10.3g} / {m:.3g}   "
            f"{float(g_backbone):12.2e}  {float(g_graph):.2e}", flush=True)


if __name__ == "__main__":
  app.run(main)
