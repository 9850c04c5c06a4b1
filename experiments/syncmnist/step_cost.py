"""FLOPs and time of one SyncMNIST training step at full size, and of a whole run.

  python experiments/syncmnist/step_cost.py                      # syncmnist_rstg.py:gpu
  python experiments/syncmnist/step_cost.py --config=configs/syncmnist_rstg.py:digits5_gpu
  python experiments/syncmnist/step_cost.py --steps=0            # FLOPs only (compile)

Compiles the config's jitted training step (`rstg_jax.train.steps`, its optimiser,
batch and loss) on random videos of the builder's shape, counts its FLOPs with XLA's
cost analysis (scan bodies per iteration, rstg_jax/tools/model_report.py), times
`--steps` steps on this machine's first device, and prints:
  - the measured step time and the time of the config's `num_train_steps` here;
  - for one H100 SXM, an *estimate* from the FLOPs: the run's FLOPs over the card's
    dense peak (TF32 495 TFLOP/s for float32 models, bf16 989 TFLOP/s) times
    --mfu (default 0.3, a typical utilisation for convolution nets this small).
On a GPU the measured figures replace the estimate.
"""
from __future__ import annotations


from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

_CONFIG = flags.DEFINE_string("config", "configs/syncmnist_rstg.py:gpu", "Config file:variant.")
_STEPS = flags.DEFINE_integer("steps", 2, "Timed steps after one warm-up (0: FLOPs only).")
_MFU = flags.DEFINE_float("mfu", 0.3, "Assumed utilisation for the H100 estimate.")
# Dense peaks of one H100 SXM (NVIDIA data sheet), FLOP/s.
H100_PEAK = {"float32": 495e12, "bfloat16": 989e12}


def main(argv):
  del argv
  from rstg_datasets.sync_mnist import sync_mnist  # pylint: disable=g-import-not-at-top
  from rstg_jax.models.classifiers import syncmnist_model  # pylint: disable=g-import-not-at-top
  from rstg_jax.tools import model_report  # pylint: disable=g-import-not-at-top
  config = model_report.load_config(_CONFIG.value)
  model = syncmnist_model.build_model(config.model)
  batch_size = config.batch_size
  shape = (batch_size,) + sync_mnist.SyncMnist.config_named(config.data.config).video_shape
  rng = np.random.default_rng(0)
  batch = {"video": jnp.asarray(rng.integers(0, 256, shape, np.uint8)),
           "label": jnp.asarray(rng.integers(0, config.model.num_classes, batch_size),
                                jnp.int32)}
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(batch["video"])
  state, step_fn, flops = model_report.train_step_and_flops(config, model, variables, batch)
  total = config.num_train_steps
  print(f"{_CONFIG.value}: batch {batch_size} x {shape[1:]}, "
        f"{sum(x.size for x in jax.tree.leaves(variables['params'])):,} parameters, {flops / 1e9:.1f} GFLOP "
        f"per training step, {total:,} steps ({flops * total / 1e15:.1f} PFLOP in all)")
  peak = H100_PEAK[config.model.dtype]
  h100_s = flops / (peak * _MFU.value)
  print(f"H100 SXM estimate (not measured): {h100_s * 1e3:.1f} ms per step at "
        f"{_MFU.value:.0%} of the {peak / 1e12:.0f} TFLOP/s {config.model.dtype} peak "
        f"-> {h100_s * total / 3600:.1f} h for the run")
  if _STEPS.value == 0:
    return
  _, metrics, step_s = model_report.time_steps(
      jax.jit(step_fn, donate_argnums=0), state, batch, _STEPS.value)
  device = jax.devices()[0]
  print(f"measured on {device.device_kind} ({device.platform}): {step_s * 1e3:.0f} ms per "
        f"step, {flops / step_s / 1e12:.3f} TFLOP/s -> {step_s * total / 3600:.1f} h for "
        f"the run (loss {float(metrics.compute()['loss']):.3f})")


if __name__ == "__main__":
  app.run(main)
