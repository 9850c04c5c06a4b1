"""Pre-trains the SyncMNIST backbone on digit presence, for `config.init_from`.

  python experiments/syncmnist/pretrain_backbone.py --out=runs/sync/backbone
  python experiments/syncmnist/compare.py --init_from=runs/sync/backbone ...

Why: in the CPU synchrony setting (`sync3_cpu`) every video holds the same three
digit classes, so the label says nothing about which digits are present and the
backbone gets no signal to become a digit detector until a model already uses
motion; and with random features nothing can find which digits move together.
This script gives every model the same head start: SimpleConv (named `backbone`,
the configs' width and stages) + mean over space + a 10-way sigmoid layer,
trained on single frames of a 10-class SyncMNIST build to say which digit
classes are in the frame. It writes OUT/checkpoints/<steps> (a TrainState whose
`params/backbone` every SyncMNIST model loads through `config.init_from`; the
`presence` layer is dropped) and OUT/pretrain.json (loss and per-class accuracy
on the test frames). About two minutes on one core.
"""
from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

_OUT = flags.DEFINE_string("out", None, "Output folder (a workdir for init_from).")
_DATA_CONFIG = flags.DEFINE_string(
    "data_config", "digits3_cpu", "sync_mnist builder config with all ten classes, "
    "frames the size of the target setting.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data dir (None: the default).")
_WIDTH = flags.DEFINE_integer("width", 16, "SimpleConv width (as the models').")
_STAGES = flags.DEFINE_integer("num_stages", 2, "SimpleConv stages (as the models').")
_INPUT_SCALE = flags.DEFINE_float("input_scale", 1 / 255, "SimpleConv pixel factor.")
_STEPS = flags.DEFINE_integer("steps", 1500, "Training steps.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Frames per step.")
_LR = flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate (cosine decay).")
_SEED = flags.DEFINE_integer("seed", 0, "Initialisation and shuffling seed.")


class PresenceNet(nn.Module):
  """SimpleConv -> mean over space -> Dense(10) `presence`: frames [B, 1, H, W, 1]
  -> presence logits [B, 10]."""
  width: int
  num_stages: int
  input_scale: float

  @nn.compact
  def __call__(self, frames: jnp.ndarray) -> jnp.ndarray:
    from rstg_jax.models.backbones.simple_conv import SimpleConv  # pylint: disable=g-import-not-at-top
    fmap = SimpleConv(width=self.width, num_stages=self.num_stages,
                      input_scale=self.input_scale, name="backbone")(frames)
    return nn.Dense(10, name="presence")(jnp.mean(fmap, axis=(1, 2, 3)))


def frames_and_presence(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(frames uint8 [V*T, 1, H, W, 1], multi-hot presence float32 [V*T, 10])."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  videos, digits = [], []
  for ex in tfds.as_numpy(builder.as_dataset(split=split)):
    videos.append(ex["video"])
    digits.append(ex["digits"])
  videos, digits = np.stack(videos), np.stack(digits)
  hot = np.zeros((len(digits), 10), np.float32)
  np.put_along_axis(hot, digits, 1.0, axis=1)
  t = videos.shape[1]
  return (videos.reshape((-1, 1) + videos.shape[2:]), np.repeat(hot, t, axis=0))


def main(argv):
  del argv
  if not _OUT.value:
    raise SystemExit("give --out=DIR")
  from rstg_datasets.sync_mnist import sync_mnist  # pylint: disable=g-import-not-at-top
  from rstg_jax.runtime import checkpointing  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import sync_mnist_input  # pylint: disable=g-import-not-at-top
  from rstg_jax.train.train_state import TrainState  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  try:
    classes = sync_mnist.SyncMnist.config_named(_DATA_CONFIG.value).digit_classes
  except ValueError as e:
    raise SystemExit(f"--data_config: {e}") from None
  if classes:
    raise SystemExit(f"--data_config={_DATA_CONFIG.value}: draws only the classes "
                     f"{classes}; presence needs all ten")
  builder = sync_mnist_input.load_builder(ml_collections.ConfigDict(dict(
      name="sync_mnist", config=_DATA_CONFIG.value, data_dir=_DATA_DIR.value,
      num_train=None, num_test=None, build_if_missing=True)))
  train_x, train_y = frames_and_presence(builder, "train")
  test_x, test_y = frames_and_presence(builder, "test")
  logging.info("presence pre-training on %s: %d train / %d test frames %s",
               builder.info.full_name, len(train_x), len(test_x), train_x.shape[2:])

  net = PresenceNet(_WIDTH.value, _STAGES.value, _INPUT_SCALE.value)
  rng = np.random.default_rng(_SEED.value)
  params = net.init(jax.random.PRNGKey(_SEED.value), train_x[:1])["params"]
  tx = optax.adam(optax.cosine_decay_schedule(_LR.value, _STEPS.value, alpha=0.1))
  state = TrainState.create(apply_fn=net.apply, params=params, tx=tx, batch_stats={})

  def loss_fn(p, x, y):
    return optax.sigmoid_binary_cross_entropy(net.apply({"params": p}, x), y).mean()

  @jax.jit
  def step(state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y)
    return state.apply_gradients(grads=grads), loss

  predict = jax.jit(lambda p, x: net.apply({"params": p}, x) > 0)
  start = time.time()
  for i in range(_STEPS.value):
    idx = rng.integers(0, len(train_x), _BATCH.value)
    state, loss = step(state, train_x[idx], train_y[idx])
    if (i + 1) % 250 == 0 or i + 1 == _STEPS.value:
      logging.info("step %d: loss %.4f (%.1f steps/s)", i + 1, float(loss),
                   (i + 1) / (time.time() - start))
  hits = np.concatenate([np.asarray(predict(state.params, test_x[i:i + 1000]))
                         == (test_y[i:i + 1000] > 0) for i in range(0, len(test_x), 1000)])
  report = {"data": builder.info.full_name, "steps": _STEPS.value,
            "batch_size": _BATCH.value, "width": _WIDTH.value, "num_stages": _STAGES.value,
            "train_seconds": time.time() - start,
            "test_frame_exact": float(hits.all(axis=1).mean()),
            "test_class_accuracy": [float(a) for a in hits.mean(axis=0)]}
  os.makedirs(_OUT.value, exist_ok=True)
  ckpt = checkpointing.Checkpointer(os.path.join(_OUT.value, "checkpoints"),
                                    max_to_keep=1, best_metric=None, async_save=False)
  ckpt.save(state, {"step": _STEPS.value, "pretrain": report, "train_seconds":
                    report["train_seconds"], "eval_history": []})
  ckpt.wait_until_finished()
  ckpt.close()
  with open(os.path.join(_OUT.value, "pretrain.json"), "w") as f:
    json.dump(report, f, indent=1)
  print(f"presence of all 10 classes right in {report['test_frame_exact']:.3f} of test "
        f"frames; per class {np.round(report['test_class_accuracy'], 3).tolist()}; "
        f"{report['train_seconds']:.0f} s -> {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
