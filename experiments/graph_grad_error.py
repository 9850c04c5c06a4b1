"""Gradient error of the graph's compute dtypes against a float64 run, and bf16 speed.

  python experiments/graph_grad_error.py                 # B=2, T=4, D=512, K=3
  python experiments/graph_grad_error.py --batch=8 --frames=16
  # The bf16 study: error per `bf16_parts` choice, then speed at the paper shape
  # (B=8, T=16) interleaved with same-run float32 and bf16 matmuls:
  python experiments/graph_grad_error.py --study [--repeats=3] [--no_speed]

Per parameter leaf (and the input nodes): max |g - g64| / max |g64| of d(loss)/d(leaf),
loss = mean(out^2) of RSTGGraph, against the literal float64 graph. Prints the median
and the worst leaf. The study adds two float32 rows that show the conditioning of the
point: exact arithmetic on inputs off by bfloat16 rounding (2^-9) moves the gradients
this much, so no bfloat16 form can be expected to do better than about that. The
graph's LayerNorms amplify such perturbations about 20-fold (and the perturbed
parameters of this point, whose dot-attention logits reach ~50, another few-fold), so
the study also measures every choice at the same point with use_norm='none', where the
floor is 10-20x lower and the choices separate.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess

import jax
import jax.numpy as jnp
import numpy as np

from bench_graph import Matmul, seconds_of, train_like_step
from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph
from rstg_jax.tools import model_report

# `bf16_parts` choices of the study, from the FLOP-heavy message layers outwards.
STUDY = ("none", "messages", "messages-pairs", "messages-update", "messages-pairs-update",
         "messages-pairs-update-lstm", "messages-pairs-update-attention", "all")

SPEED_SHAPES = {"paper": (8, 16), "small": (2, 8)}  # (B, T), as bench_graph.py


def grads(cfg, params, nodes, dtype):
  return train_like_step(cfg, dtype)(params, nodes)[1]


def leaf_errors(got, want):
  top = max(float(np.max(np.abs(w))) for w in jax.tree.leaves(want))
  return [float(np.max(np.abs(np.asarray(g, np.float64) - w))
                / max(float(np.max(np.abs(w))), 1e-6 * top))
          for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want))]


def error_point(base: GraphConfig, batch: int, frames: int):
  """Input nodes and perturbed parameters (LN scales/biases off their init values)."""
  nodes = jax.random.normal(jax.random.key(0), (batch, frames, 14, base.node_feat_dim))
  params = jax.jit(RSTGGraph(base).init)(jax.random.key(1), nodes)["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda p: p + 0.05 * rng.normal(size=p.shape).astype(np.float32),
                        params)
  return params, nodes


def reference(base: GraphConfig, params, nodes):
  """Gradients of the literal float64 graph."""
  with jax.enable_x64(True):
    ref = grads(dataclasses.replace(base, pair_rewrite=False),
                jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params),
                jnp.asarray(nodes, jnp.float64), jnp.float64)
    return jax.tree.map(np.asarray, ref)


def summary(errs) -> str:
  return f"median {statistics.median(errs):.2e} worst {max(errs):.2e} ({len(errs)} leaves)"


def study_errors(base, params, nodes, ref, choices=STUDY) -> dict:
  """Per-leaf errors of float32, the conditioning rows and every bf16_parts choice."""
  rows = {"float32": leaf_errors(grads(base, params, nodes, jnp.float32), ref)}
  bf16_nodes = nodes.astype(jnp.bfloat16).astype(jnp.float32)
  rows["float32, input rounded to bf16"] = leaf_errors(
      grads(base, params, bf16_nodes, jnp.float32), ref)
  noise = 2.0 ** -9 * jax.random.normal(jax.random.key(7), nodes.shape)
  rows["float32, input x (1 + 2^-9 N(0,1))"] = leaf_errors(
      grads(base, params, nodes * (1 + noise), jnp.float32), ref)
  for parts in choices:
    cfg = dataclasses.replace(base, bf16_parts=parts)
    rows[f"bf16 {parts}"] = leaf_errors(grads(cfg, params, nodes, jnp.bfloat16), ref)
  return rows


def study_speed(base: GraphConfig, batch: int, frames: int, repeats: int,
                choices=STUDY) -> dict:
  """clips/s and ratios to same-run float32 / bf16 matmuls, all sides interleaved."""
  nodes = jax.random.normal(jax.random.key(0), (batch, frames, 14, base.node_feat_dim))
  params = jax.jit(RSTGGraph(base).init)(jax.random.key(1), nodes)["params"]
  sides = {"float32": (base, jnp.float32)} | {
      f"bf16 {p}": (dataclasses.replace(base, bf16_parts=p), jnp.bfloat16) for p in choices}
  steps = {}
  for name, (cfg, dtype) in sides.items():
    step = train_like_step(cfg, dtype)
    flops = model_report.xla_flops(step, params, nodes)
    seconds_of(step, params, nodes)  # compile, warm up
    steps[name] = (step, flops)
  mm = {"f32": Matmul(), "bf16": Matmul(dtype=jnp.bfloat16)}
  times = {name: [] for name in steps}
  ratios = {name: {"f32": [], "bf16": []} for name in steps}
  for _ in range(repeats):
    for name, (step, flops) in steps.items():
      rates = {k: m.gflops_per_s() for k, m in mm.items()}
      sec = seconds_of(step, params, nodes)
      times[name].append(sec)
      for k, rate in rates.items():
        ratios[name][k].append(flops / sec / 1e9 / rate)
  return {name: {"clips_per_s": batch / statistics.median(times[name]),
                 "ratio_f32": statistics.median(ratios[name]["f32"]),
                 "ratio_bf16": statistics.median(ratios[name]["bf16"])} for name in steps}


def load() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split(
      "load average:")[-1].strip()


def run_study(base: GraphConfig, args):
  choices = tuple(args.choices.split(",")) if args.choices else STUDY
  errors = {}
  for norm in ("LN", "none"):
    cfg = dataclasses.replace(base, use_norm=norm)
    params, nodes = error_point(cfg, args.batch, args.frames)
    errors[norm] = study_errors(cfg, params, nodes, reference(cfg, params, nodes), choices)
  batch, frames = SPEED_SHAPES[args.speed_shape]
  speed = {} if args.no_speed else study_speed(base, batch, frames, args.repeats, choices)
  print(f"gradient error: B={args.batch} T={args.frames} D={base.node_feat_dim} "
        f"scan={base.scan}, per-leaf max|g - g64| / max|g64|; speed: forward+backward, "
        f"B={batch} T={frames}, median of {args.repeats}, load {load()} (1/5/15 min)")
  print("| choice | grad err median / worst (LN) | grad err median / worst (no norm) | "
        "clips/s | ratio to f32 matmul | ratio to bf16 matmul |")
  print("|---|---|---|---|---|---|")
  for name in errors["LN"]:
    s = speed.get(name)
    cells = [f"{statistics.median(errors[n][name]):.2e} / {max(errors[n][name]):.2e}"
             for n in ("LN", "none")]
    cells += ([f"{s['clips_per_s']:.2f}", f"{s['ratio_f32']:.2f}", f"{s['ratio_bf16']:.2f}"]
              if s else ["-"] * 3)
    print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--frames", type=int, default=4)
  parser.add_argument("--scan", default="k_pass")
  parser.add_argument("--study", action="store_true", help="the bf16_parts table")
  parser.add_argument("--no_speed", action="store_true", help="study: errors only")
  parser.add_argument("--repeats", type=int, default=3, help="study: timed rounds")
  parser.add_argument("--speed_shape", choices=sorted(SPEED_SHAPES), default="paper",
                      help="study: (B, T) of the timing")
  parser.add_argument("--choices", default="",
                      help="study: comma-separated bf16_parts values (default: all rows)")
  args = parser.parse_args()
  base = GraphConfig(scan=args.scan)
  if args.study:
    run_study(base, args)
    return
  params, nodes = error_point(base, args.batch, args.frames)
  ref = reference(base, params, nodes)
  print(f"B={args.batch} T={args.frames} scan={args.scan}: per-leaf max|g - g64| / max|g64|")
  for dtype in ("float32", "bfloat16"):
    for rewrite in (False, True):
      cfg = dataclasses.replace(base, pair_rewrite=rewrite)
      errs = leaf_errors(grads(cfg, params, nodes, jnp.dtype(dtype)), ref)
      print(f"{dtype:9s} pair_rewrite={rewrite!s:5s} {summary(errs)}", flush=True)


if __name__ == "__main__":
  main()
