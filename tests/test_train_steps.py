"""Train/eval steps, losses, optimisers and metrics of rstg_jax.train."""
from __future__ import annotations

import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rstg_configs import syncmnist_common
from rstg_jax.models.classifiers import syncmnist_model
from rstg_jax.runtime import parallel
from rstg_jax.tasks import sync_mnist_metrics
from rstg_jax.train import losses, metrics, optimizers, steps
from rstg_jax.train.train_state import TrainState

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def tiny_config(model: str):
  module = syncmnist_common
  c = module.make_config(model, "tiny")
  m = c.model
  m.backbone.width = m.graph.node_feat_dim = m.graph.message_dims = 8
  m.lstm.units = 8
  return c


def make_state(config, video_shape, tx):
  model = syncmnist_model.build_model(config.model)
  variables = jax.jit(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1,) + video_shape, jnp.uint8), train=False))()
  return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                           batch_stats=variables.get("batch_stats", {}))


def random_batch(seed, batch=8, frames=3):
  rng = np.random.RandomState(seed)
  return {"video": rng.randint(0, 256, (batch, frames, 64, 64, 1)).astype(np.uint8),
          "label": rng.randint(0, 46, (batch,)).astype(np.int32)}


def test_steps_lower_the_loss_on_a_fixed_batch_without_retracing():
  config = tiny_config("lstm")
  mesh = parallel.make_mesh()
  batch = parallel.host_to_global(random_batch(0), mesh)
  state = parallel.replicate(make_state(config, (3, 64, 64, 1), optax.adam(1e-2)), mesh)
  # The jitted step must be traced once: same shapes and dtypes every step.
  step_fn = chex.assert_max_traces(
      steps.make_train_step(base_rng=jax.random.PRNGKey(1)), n=1)
  train_step = parallel.jit_train_step(step_fn, mesh)
  losses_seen = []
  for _ in range(8):
    state, m = train_step(state, batch)
    losses_seen.append(float(m.loss.compute()))
  assert int(state.step) == 8
  # ln(46) = 3.83 at the start; memorising 8 videos must make clear progress.
  assert losses_seen[-1] < 0.85 * losses_seen[0], losses_seen
  assert all(b < a for a, b in zip(losses_seen, losses_seen[1:])), losses_seen
  # A different batch (same shapes) still does not retrace.
  state, _ = train_step(state, parallel.host_to_global(random_batch(1), mesh))


def test_eight_and_one_device_steps_agree():
  """Sharding the batch must not change the maths, BatchNorm statistics included."""
  # The mean baseline has a BatchNorm (baseline_bn), like the graph's pre-graph
  # BatchNorm, and compiles much faster than the graph.
  config = tiny_config("mean")
  # Plain momentum: Adam's first steps are lr * sign(g) and would blow float
  # noise on gradients that are exactly zero in theory up to O(lr).
  tx = optimizers.make_optimizer({"name": "nesterov", "momentum": 0.9}, 1e-4)
  # On the host: device_put from numpy copies, so donation never frees `init`.
  init = jax.device_get(make_state(config, (3, 64, 64, 1), tx))
  assert init.batch_stats, "the model should carry BatchNorm statistics"
  step_fn = steps.make_train_step(base_rng=jax.random.PRNGKey(1))
  batches = [random_batch(s) for s in (0, 1)]
  results = []
  for devices in (jax.devices()[:8], jax.devices()[:1]):
    assert len(devices) == 8 or len(devices) == 1
    mesh = parallel.make_mesh(devices)
    state = parallel.replicate(init, mesh)
    train_step = parallel.jit_train_step(step_fn, mesh)
    for b in batches:
      state, m = train_step(state, parallel.host_to_global(b, mesh))
    results.append((jax.device_get(state.params), jax.device_get(state.batch_stats),
                    float(m.loss.compute())))
  (p8, bs8, l8), (p1, bs1, l1) = results
  # Per-device BatchNorm statistics change the gradients by O(1) relative;
  # float reassociation across 8 shards stays far below 1e-4 relative.
  chex.assert_trees_all_close(p8, p1, rtol=1e-4, atol=1e-7)
  chex.assert_trees_all_close(bs8, bs1, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(l8, l1, rtol=2e-4)


def test_batch_that_does_not_divide_the_devices_fails_clearly():
  mesh = parallel.make_mesh(jax.devices()[:8])
  with pytest.raises(ValueError, match=r"config\.batch_size=12 must be a positive "
                     r"multiple of the number of devices \(8\)"):
    parallel.per_process_batch_size(12, mesh, "config.batch_size")
  assert parallel.per_process_batch_size(16, mesh, "config.batch_size") == 16


def test_cross_entropy_reductions_match_numpy():
  rng = np.random.RandomState(0)
  logits = rng.randn(5, 46).astype(np.float32)
  labels = rng.randint(0, 46, 5)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  per_example = -logp[np.arange(5), labels]
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), per_example.mean(),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, reduction="sum"),
                             per_example.sum(), rtol=1e-5)
  with pytest.raises(ValueError, match="loss_reduction"):
    losses.cross_entropy(logits, labels, reduction="avg")


def test_nesterov_matches_the_tf_momentum_update():
  cfg = {"name": "nesterov", "learning_rate": 0.1, "momentum": 0.9}
  tx = optimizers.make_optimizer(cfg, 0.1)
  params = {"w": jnp.array([1.0, -2.0])}
  state = tx.init(params)
  # tf.train.MomentumOptimizer(use_nesterov=True): a = m a + g; w -= lr (g + m a).
  w, accum = np.array([1.0, -2.0]), np.zeros(2)
  for g in ([0.5, 1.0], [-1.0, 0.25], [2.0, 2.0]):
    updates, state = tx.update({"w": jnp.array(g)}, state, params)
    params = optax.apply_updates(params, updates)
    accum = 0.9 * accum + np.array(g)
    w = w - 0.1 * (np.array(g) + 0.9 * accum)
  np.testing.assert_allclose(params["w"], w, rtol=1e-6)


def test_weight_decay_skips_biases_and_norms():
  params = {"conv1": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)},
            "BatchNorm_0": {"scale": jnp.ones(3), "bias": jnp.ones(3)},
            "lstm": {"hi": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}}
  cfg = {"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.5}
  tx = optimizers.make_optimizer(cfg, 0.1)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  moved = jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates)
  assert moved == {"conv1": {"kernel": True, "bias": False},
                   "BatchNorm_0": {"scale": False, "bias": False},
                   "lstm": {"hi": {"kernel": True, "bias": False}}}


def test_warmup_cosine_schedule_and_clipping():
  cfg = {"name": "nesterov", "learning_rate": 1.0, "schedule": "warmup_cosine",
         "warmup_steps": 10, "end_lr_factor": 0.1, "grad_clip_norm": 1.0}
  lr = optimizers.learning_rate_schedule(cfg, 110)
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)],
                             [0.0, 0.5, 1.0, 0.55, 0.1], rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="warmup_steps"):
    optimizers.learning_rate_schedule(cfg, 5)
  with pytest.raises(ValueError, match="no steps for the cosine decay"):
    optimizers.learning_rate_schedule(cfg, 10)   # optax itself fails obscurely
  tx = optimizers.make_optimizer({**cfg, "momentum": 0.0, "name": "momentum"}, 1.0)
  params = {"w": jnp.zeros(2)}
  updates, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)  # norm 50 -> 1


def test_eval_metrics_ignore_padding_and_match_numpy():
  rng = np.random.RandomState(0)
  logits = rng.randn(6, 46).astype(np.float32)
  labels = np.array([3, 3, 7, 45, 0, 9], np.int32)
  logits[0, 3] = 10.0                      # example 0 right at top-1
  logits[1, 3] = -10.0                     # example 1 wrong
  mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
  logits[4:] = np.nan                      # padding may hold anything
  m = metrics.EvalMetrics.single_from_model_output(
      loss=jnp.where(mask > 0, 1.0, jnp.nan), logits=jnp.asarray(logits),
      labels=jnp.asarray(labels), mask=jnp.asarray(mask))
  # Merging with a second, empty-looking batch (all padding) changes nothing.
  pad = metrics.EvalMetrics.single_from_model_output(
      loss=jnp.full(6, jnp.nan), logits=jnp.asarray(logits), labels=jnp.asarray(labels),
      mask=jnp.zeros(6))
  out = m.merge(pad).compute()
  real = logits[:4]
  top1 = (real.argmax(-1) == labels[:4]).mean()
  top5 = np.mean([labels[i] in np.argsort(-real[i])[:5] for i in range(4)])
  assert int(out["num_examples"]) == 4
  np.testing.assert_allclose(out["loss"], 1.0)
  np.testing.assert_allclose(out["top1"], top1)
  np.testing.assert_allclose(out["top5"], top5)
  per_class = out["per_class_top1"]
  assert per_class.shape == (46,)
  assert per_class[3] == 0.5 and np.isnan(per_class[0]) and np.isnan(per_class[9])


def test_sync_pair_accuracy_matches_python_reference():
  """Only synchronous, unpadded videos count; pairs come from the present digits."""
  from itertools import combinations
  from rstg_datasets.sync_mnist import pair_labels
  rng = np.random.RandomState(1)
  n, num_digits = 64, 3
  digits = np.stack([rng.choice(10, num_digits, replace=False) for _ in range(n)])
  labels = np.array([pair_labels.pair_label(d[0], d[1]) for d in digits], np.int32)
  labels[:5] = pair_labels.NO_SYNC_LABEL           # class 45 never counts
  mask = np.ones(n, np.float32)
  mask[-7:] = 0                                    # nor does padding
  logits = rng.randn(n, 46).astype(np.float32)
  # Half the videos get their pair pushed up; the wrong pair of one of them
  # is pushed higher still.
  logits[::2][np.arange(n // 2), labels[::2]] += 3.0
  wrong = pair_labels.pair_label(digits[10, 0], digits[10, 2])
  logits[10, wrong] = logits[10, labels[10]] + 1.0
  whole = sync_mnist_metrics.SyncPairAccuracy.from_model_output(
      logits=jnp.asarray(logits), labels=jnp.asarray(labels),
      digits=jnp.asarray(digits, jnp.int32), mask=jnp.asarray(mask))
  half = n // 2
  m = sync_mnist_metrics.SyncPairAccuracy.from_model_output(
      logits=jnp.asarray(logits[:half]), labels=jnp.asarray(labels[:half]),
      digits=jnp.asarray(digits[:half]), mask=jnp.asarray(mask[:half])).merge(
          sync_mnist_metrics.SyncPairAccuracy.from_model_output(
              logits=jnp.asarray(logits[half:]), labels=jnp.asarray(labels[half:]),
              digits=jnp.asarray(digits[half:]), mask=jnp.asarray(mask[half:])))
  hits = []
  for i in range(n):
    if labels[i] == pair_labels.NO_SYNC_LABEL or mask[i] == 0:
      continue
    pairs = [pair_labels.pair_label(digits[i, a], digits[i, b])
             for a, b in combinations(range(num_digits), 2)]
    best = max(pairs, key=lambda p: logits[i, p])
    hits.append(best == labels[i])
  assert int(m.total) == int(whole.total) == len(hits) == n - 5 - 7
  assert int(m.correct) == int(whole.correct)      # merging = one pass
  np.testing.assert_allclose(m.compute(), np.mean(hits))
  assert 0.4 < m.compute() < 0.9                  # neither trivial case
  assert not hits[10 - 5]                          # the pushed wrong pair won
  empty = sync_mnist_metrics.SyncPairAccuracy.empty()
  assert np.isnan(empty.compute())


def test_graph_lr_factor_scales_only_graph_updates():
  params = {"backbone": {"kernel": jnp.ones(3)}, "graph": {"dense": {"kernel": jnp.ones(3)}},
            "graph_res3": {"bias": jnp.ones(3)}, "pred": {"graph_like": jnp.ones(3)}}
  grads = jax.tree.map(lambda p: jnp.array([0.5, -2.0, 3.0]), params)
  cfg = {"name": "adam", "learning_rate": 1e-2}
  plain, _ = optimizers.make_optimizer(cfg, 1e-2).update(grads, optimizers.make_optimizer(
      cfg, 1e-2).init(params), params)
  tx = optimizers.make_optimizer({**cfg, "graph_lr_factor": 0.1}, 1e-2)
  scaled, _ = tx.update(grads, tx.init(params), params)
  # Module names starting with 'graph' are the graph; a leaf named so is not.
  for path in (("graph", "dense", "kernel"), ("graph_res3", "bias")):
    a, b = plain, scaled
    for k in path:
      a, b = a[k], b[k]
    np.testing.assert_allclose(b, 0.1 * a, rtol=1e-6)
  np.testing.assert_allclose(scaled["backbone"]["kernel"], plain["backbone"]["kernel"])
  np.testing.assert_allclose(scaled["pred"]["graph_like"], plain["pred"]["graph_like"])
