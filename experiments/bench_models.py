"""Train-step throughput of the Something-Something models, and FLOP/s vs a matmul.

  # CPU-sized clip (full-width ResNet-50s, 8 frames x 112 px, batch 2):
  python experiments/bench_models.py
  python experiments/bench_models.py --configs=smt_i3d,smt_i3d_rstg_final --steps=3
  # The paper's size (32 frames x 224 px), e.g. on a GPU, bf16 and rematerialisation:
  python experiments/bench_models.py --full --batch_size=8 --dtype=bfloat16 --remat
  # Compile only: XLA's temporary memory of a full-size step (runs on a CPU too):
  python experiments/bench_models.py --full --steps=0 --configs=smt_i3d_rstg_res3_res4
  # Every mode (float32 / bfloat16, without / with remat) in one table, and the
  # backbone / graph / head parts of one config (a CPU-sized run of the tiny variants):
  python experiments/bench_models.py --all_modes --parts --variant=tiny --frames=8 \
      --image_size=64 --configs=smt_c2d_rstg_final,smt_i3d_rstg_final,smt_i3d_rstg_res3_res4
  # The same at the paper's shape on a GPU:
  python experiments/bench_models.py --all_modes --parts --full --batch_size=8

For each config: one jitted training step of the trainer (`rstg_jax.train.steps`,
Nesterov momentum, summed loss, frozen backbone BN) is compiled, run once to warm up and
then timed over `--steps` steps. The FLOPs of one step come from XLA's cost analysis
(scan bodies counted per iteration, see rstg_jax/tools/model_report.py); achieved
FLOP/s = FLOPs / step time, compared with the rate of a float32 (or --dtype) matmul
measured in the same run on the same device. With `--parts`, each part of the model
(backbone to res5, the final graph block on a res5-shaped map, the pool5 + classifier
head) is timed alone, forward + backward w.r.t. its parameters, with its FLOPs and
XLA temporary memory.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rstg_jax.models.backbones import resnet_video
from rstg_jax.models.classifiers import smt_model
from rstg_jax.models.graph.graph_block import RSTGBlock
from rstg_jax.tools import model_report

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
_ALL_MODES = flags.DEFINE_bool(
    "all_modes", False, "Run float32 and bfloat16, each without and with remat "
    "(overrides --dtype and --remat).")
_PARTS = flags.DEFINE_bool(
    "parts", False, "Also time the backbone / graph / head parts of configs that "
    "have a final graph.")
_JSON = flags.DEFINE_bool("json", False, "Print JSON rows instead of a table.")
_CONFIG_DIR = flags.DEFINE_string("config_dir", None, "Default: the repository's configs/.")


def matmul_flops_per_s(dtype: str, n: int | None = None, reps: int = 5) -> float:
  """Rate of an n x n x n matmul on the default device (same run, same dtype)."""
  on_cpu = jax.default_backend() == "cpu"
  n = n or (2048 if on_cpu else 8192)
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
  # As the graph's bfloat16 matmuls: float32 accumulation and output (also XLA:CPU's
  # fast bfloat16 path; a bfloat16-output dot was slower than float32 here).
  f = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  f(a, b).block_until_ready()
  t = time.perf_counter()
  for _ in range(reps):
    out = f(a, b)
  out.block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - t)


def build(config, dtype: str, remat: bool):
  """The model at the benchmark's clip size, a random uint8 batch and its variables."""
  if _FULL.value:
    frames, image = 32, 224
  else:
    frames, image = _FRAMES.value, _IMAGE.value
  config.data.num_frames, config.data.image_size = frames, image
  fm = resnet_video.feature_map_size(image, config.model.res5_stride)
  config.model.pool5_window = (frames // 2, fm, fm)
  config.model.graph.image_dim = image
  config.model.dtype = dtype
  if remat:
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
  return model, batch, variables, (frames, image)


def temp_gib(compiled) -> float | None:
  memory = compiled.memory_analysis()
  return round(memory.temp_size_in_bytes / 2 ** 30, 3) if memory else None


def seconds_per_call(compiled, *args) -> float:
  """One warm-up call, then the mean over --steps calls (the outputs are discarded)."""
  jax.block_until_ready(compiled(*args))
  t = time.perf_counter()
  for _ in range(_STEPS.value):
    out = compiled(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / _STEPS.value


def bench_parts(name: str, config, dtype: str, remat: bool) -> list[dict]:
  """Forward + backward of the backbone, the final graph block and the head, alone."""
  model, batch, variables, (frames, image) = build(config, dtype, remat)
  params, stats = variables["params"], variables.get("batch_stats", {})
  x = (batch["video"].astype(jnp.float32) - model.input_mean) / model.input_std
  res5 = jax.eval_shape(lambda: model.backbone.apply(
      {"params": params["backbone"], "batch_stats": stats.get("backbone", {})}, x,
      train=False)["res5"])
  feats = jax.random.normal(jax.random.key(2), res5.shape, jnp.float32).astype(res5.dtype)
  block = RSTGBlock(graph=model.graph, readout="vec",
                    project=res5.shape[-1] != model.graph.node_feat_dim,
                    residual_norm=model.final_norm, dtype=model.dtype)

  def backbone_loss(p, v):
    out = model.backbone.apply({"params": p, "batch_stats": stats.get("backbone", {})},
                               v, train=True, mutable=["batch_stats"])[0]["res5"]
    return jnp.mean(jnp.square(out.astype(jnp.float32)))

  def graph_loss(p, f):
    out = block.apply({"params": p, "batch_stats": stats.get("graph_final", {})}, f,
                      train=True, mutable=["batch_stats"])[0]
    return jnp.mean(jnp.square(out.astype(jnp.float32)))

  def head_loss(p, f):
    pooled = smt_model._pool5(f, model.pool5_window)
    logits = jnp.mean(nn.Dense(model.num_classes).apply({"params": p}, pooled),
                      axis=(1, 2, 3))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))

  parts = [("backbone", backbone_loss, params["backbone"], x),
           ("graph", graph_loss, params["graph_final"], feats),
           ("head", head_loss, params["pred"], feats)]
  rows = []
  for part, loss, p, inp in parts:
    fn = jax.value_and_grad(loss)
    flops = model_report.xla_flops(fn, p, inp)
    compiled = jax.jit(fn).lower(p, inp).compile()
    row = {"config": f"{name}:{part}", "clip": [frames, image, image],
           "batch": _BATCH.value, "dtype": dtype, "remat": remat,
           "temp_gib": temp_gib(compiled), "gflop_per_step": round(flops / 1e9, 3)}
    if _STEPS.value:
      sec = seconds_per_call(compiled, p, inp)
      row.update(step_ms=round(sec * 1e3, 1), clips_per_s=round(_BATCH.value / sec, 3),
                 achieved_gflops=round(flops / sec / 1e9, 2))
    rows.append(row)
  return rows


def bench_config(name: str, config, dtype: str, remat: bool) -> dict:
  """Compiles, warms up and times the training step of one config."""
  model, batch, variables, (frames, image) = build(config, dtype, remat)
  batch_size = _BATCH.value
  state, step_fn, flops = model_report.train_step_and_flops(config, model, variables, batch)
  step = jax.jit(step_fn, donate_argnums=0)
  t = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t
  row = {"config": name, "clip": [frames, image, image], "batch": batch_size,
         "dtype": dtype, "remat": remat, "compile_s": round(compile_s, 1),
         # XLA's buffer assignment: activations and other temporaries of one step.
         "temp_gib": temp_gib(compiled), "gflop_per_step": round(flops / 1e9, 3)}
  if _STEPS.value == 0:                            # compile-only (memory, FLOPs)
    return row
  _, metrics, step_s = model_report.time_steps(compiled, state, batch, _STEPS.value)
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
  modes = ([(d, r) for d in ("float32", "bfloat16") for r in (False, True)]
           if _ALL_MODES.value else [(_DTYPE.value, _REMAT.value)])
  rows = []
  for name in _CONFIGS.value:
    path = os.path.join(config_dir, f"{name}.py")
    spec = path + (f":{_VARIANT.value}" if _VARIANT.value else "")
    for dtype, remat in modes:
      config = model_report.load_config(spec)
      new = [bench_config(name, config, dtype, remat)]
      if _PARTS.value and "final" in smt_model.parse_places(
          config.model.place_graph, smt_model.GRAPH_PLACES, "place_graph"):
        new += bench_parts(name, model_report.load_config(spec), dtype, remat)
      mm = matmul_flops_per_s(dtype)  # the same run, right after the rows it rates
      for row in new:
        row["matmul_gflops"] = round(mm / 1e9, 1)
        if "achieved_gflops" in row:
          row["ratio_to_matmul"] = round(row["achieved_gflops"] * 1e9 / mm, 3)
      rows += new
      print(f"done {name} {dtype} remat={remat}: {new[0].get('step_ms')} ms/step",
            file=sys.stderr, flush=True)
  device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {os.cpu_count()} CPUs)"
  if _JSON.value:
    print(json.dumps({"device": device, "rows": rows}, indent=1))
    return
  load = os.getloadavg()
  print(f"device: {device}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
        "bfloat16 matmuls accumulate in float32")
  cols = ["config", "clip", "batch", "dtype", "remat", "compile_s", "temp_gib",
          "gflop_per_step", "step_ms", "clips_per_s", "achieved_gflops",
          "matmul_gflops", "ratio_to_matmul"]
  print("| " + " | ".join(cols) + " |")
  print("|" + "---|" * len(cols))
  for r in rows:
    cells = ["x".join(map(str, r[c])) if c == "clip" else str(r.get(c, "-"))
             for c in cols]
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
