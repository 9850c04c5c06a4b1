"""Train-step throughput of the Something-Something models, and FLOP/s vs a matmul.

  # CPU-sized clip (full-width ResNet-50s, 8 frames x 112 px, batch 2):
  python experiments/bench_models.py
  python experiments/bench_models.py --configs=smt_i3d,smt_i3d_rstg_final --steps=3
  # The paper's size (32 frames x 224 px), e.g. on a GPU, bf16 and rematerialisation:
  python experiments/bench_models.py --full --batch_size=8 --dtype=bfloat16 --remat
  # Compile only: XLA's temporary memory of a full-size step (runs on a CPU too):
  python experiments/bench_models.py --full --steps=0 --configs=smt_i3d_rstg_res3_res4

For each config: one jitted training step of the trainer (`rstg_jax.train.steps`,
Nesterov momentum, summed loss, frozen backbone BN) is compiled, run once to warm up and
then timed over `--steps` steps. The FLOPs of one step come from XLA's cost analysis
(scan bodies counted per iteration, see rstg_jax/tools/model_report.py); achieved
FLOP/s = FLOPs / step time, compared with the rate of a float32 (or --dtype) matmul
measured in the same run on the same device.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from rstg_jax.models.backbones import resnet_video
from rstg_jax.models.classifiers import smt_model
from rstg_jax.tools import model_report
from rstg_jax.train import optimizers
from rstg_jax.train import steps
from rstg_jax.train.train_state import TrainState

DEFAULT_CONFIGS = ("smt_c2d", "smt_c2d_rstg_final", "smt_i3d", "smt_i3d_rstg_final",
                   "smt_i3d_rstg_res3_res4", "smt_nonlocal")

_CONFIGS = flags.DEFINE_list("configs", list(DEFAULT_CONFIGS), "configs/<name>.py to run.")
_VARIANT = flags.DEFINE_string("variant", "", "get_config argument ('' or 'tiny').")
_FULL = flags.DEFINE_bool("full", False, "The paper's clip: 32 frames x 224 px.")
_FRAMES = flags.DEFINE_integer("frames", 8, "Frames per clip (without --full).")
_IMAGE = flags.DEFINE_integer("image_size", 112, "Image side (without --full).")
_BATCH = flags.DEFINE_integer("batch_size", 2, "Clips per step.")
_STEPS = flags.DEFINE_integer(
    "steps", 3, "Timed steps (after one warm-up step); 0: compile only (memory, FLOPs).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_REMAT = flags.DEFINE_bool("remat", False, "Rematerialise all backbone stages and the graph.")
_JSON = flags.DEFINE_bool("json", False, "Print JSON rows instead of a table.")
_CONFIG_DIR = flags.DEFINE_string("config_dir", None, "Default: the repository's configs/.")


def matmul_flops_per_s(dtype: str, n: int | None = None, reps: int = 5) -> float:
  """Rate of an n x n x n matmul on the default device (same run, same dtype)."""
  on_cpu = jax.default_backend() == "cpu"
  n = n or (2048 if on_cpu else 8192)
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  t = time.perf_counter()
  for _ in range(reps):
    out = f(a, b)
  out.block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - t)


def bench_config(name: str, config) -> dict:
  """Compiles, warms up and times the training step of one config."""
  if _FULL.value:
    frames, image = 32, 224
  else:
    frames, image = _FRAMES.value, _IMAGE.value
  config.data.num_frames, config.data.image_size = frames, image
  fm = resnet_video.feature_map_size(image, config.model.res5_stride)
  config.model.pool5_window = (frames // 2, fm, fm)
  config.model.graph.image_dim = image
  config.model.dtype = _DTYPE.value
  if _REMAT.value:
    config.model.remat_stages = "all"
    config.model.graph.remat = True
  model = smt_model.build_model(config.model)
  batch_size = _BATCH.value
  shape = (batch_size, frames, image, image, 3)
  rng = np.random.default_rng(0)
  batch = {"video": jnp.asarray(rng.integers(0, 256, shape, np.uint8)),
           "label": jnp.asarray(rng.integers(0, config.model.num_classes, batch_size),
                                jnp.int32)}
  variables = jax.jit(lambda x: model.init(jax.random.key(0, impl="rbg"), x,
                                           train=False))(batch["video"])
  tx = optimizers.make_optimizer(config.optimizer, config.optimizer.learning_rate)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                            batch_stats=variables.get("batch_stats", {}))
  step_fn = steps.make_train_step(base_rng=jax.random.key(0),
                                  loss_reduction=config.loss_reduction)
  flops = model_report.xla_flops(step_fn, state, batch)
  step = jax.jit(step_fn, donate_argnums=0)
  t = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t
  memory = compiled.memory_analysis()
  row = {"config": name, "clip": [frames, image, image], "batch": batch_size,
         "dtype": _DTYPE.value, "remat": _REMAT.value, "compile_s": round(compile_s, 1),
         # XLA's buffer assignment: activations and other temporaries of one step.
         "temp_gib": round(memory.temp_size_in_bytes / 2 ** 30, 2) if memory else None,
         "gflop_per_step": round(flops / 1e9, 3)}
  if _STEPS.value == 0:                            # compile-only (memory, FLOPs)
    return row
  state, metrics = compiled(state, batch)          # warm-up
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(state)
  step_s = (time.perf_counter() - t) / _STEPS.value
  # Peak device memory of this process so far (GPU/TPU; None where the backend has no stats).
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  row["peak_gib"] = round(peak / 2 ** 30, 2) if peak is not None else None
  row.update(step_ms=round(step_s * 1e3, 1), clips_per_s=round(batch_size / step_s, 3),
             achieved_gflops=round(flops / step_s / 1e9, 2),
             loss=round(float(metrics.compute()["loss"]), 3))
  return row


def main(argv):
  del argv
  config_dir = _CONFIG_DIR.value or model_report.default_config_dir()
  mm = matmul_flops_per_s(_DTYPE.value)
  rows = []
  for name in _CONFIGS.value:
    path = os.path.join(config_dir, f"{name}.py")
    spec = path + (f":{_VARIANT.value}" if _VARIANT.value else "")
    row = bench_config(name, model_report.load_config(spec))
    row["matmul_gflops"] = round(mm / 1e9, 1)
    if "achieved_gflops" in row:
      row["ratio_to_matmul"] = round(row["achieved_gflops"] * 1e9 / mm, 3)
    rows.append(row)
    print(f"done {name}: {row.get('step_ms')} ms/step", file=sys.stderr, flush=True)
  device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {os.cpu_count()} CPUs)"
  if _JSON.value:
    print(json.dumps({"device": device, "rows": rows}, indent=1))
    return
  print(f"device: {device}; matmul {_DTYPE.value}: {mm / 1e9:.1f} GFLOP/s")
  cols = ["config", "clip", "batch", "dtype", "remat", "compile_s", "temp_gib",
          "gflop_per_step", "step_ms", "clips_per_s", "achieved_gflops",
          "ratio_to_matmul"]
  print("| " + " | ".join(cols) + " |")
  print("|" + "---|" * len(cols))
  for r in rows:
    cells = ["x".join(map(str, r[c])) if c == "clip" else str(r.get(c, "-"))
             for c in cols]
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
