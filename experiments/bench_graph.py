"""Benchmark: forward+backward of the RSTG graph, against a same-run matmul rate.

  python experiments/bench_graph.py            # paper and small shapes, both scan forms
  python experiments/bench_graph.py --json     # one JSON object (paper shape, default scan)
  # A/B of a boolean GraphConfig field, both settings interleaved in one process:
  python experiments/bench_graph.py --ab=pair_rewrite --shape=paper --scan=k_pass
  # And the ceiling: the step's matmuls timed alone at their own shapes.
  python experiments/bench_graph.py --ceiling

Times a jitted value-and-grad of the graph on node features [B, T, N, D] after warm-up
(median of several runs), counts its FLOPs with XLA's cost analysis (scan iterations included,
`rstg_jax.tools.model_report.xla_flops`), and measures a
float32 4096x4096 matmul on the same device in the same run, interleaved with the graph
runs so that both see the same load; the ratio is the median of per-pair ratios. The ratio
achieved GFLOP/s / matmul GFLOP/s is comparable across machines; absolute times are not
(these machines are shared). Targets (issue 16): ratio >= 0.87 at the paper shape,
>= 0.75 at the small one, in both scan forms.

--ceiling adds, per shape and form, the time of the step's matmuls run one by one at
their own shapes (rstg_jax/tools/matmul_ceiling.py): the ratio the step would reach if
everything else were free, and the matmuls that cost most.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import jax
import jax.numpy as jnp

from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph
from rstg_jax.tools import matmul_ceiling
from rstg_jax.tools import model_report

SHAPES = {"paper": (8, 16), "small": (2, 8), "tiny": (2, 4)}  # (B, T); N = 14, K = 3
TARGETS = {"paper": 0.87, "small": 0.75}  # ratio to the same-run matmul, issue 16
# D = 512, except 'tiny' (D = 32, a CPU smoke test of the script).


def seconds_of(fn, *args) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0


class Matmul:
  """An n x n matmul, the reference rate of the machine (GFLOP/s per call).

  float32, or `dtype` inputs accumulating in float32 (the graph's bfloat16 matmuls).
  """

  def __init__(self, n: int = 4096, dtype=jnp.float32):
    self.n = n
    self.fn = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    self.a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    self.b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    seconds_of(self.fn, self.a, self.b)  # compile

  def gflops_per_s(self) -> float:
    return 2 * self.n ** 3 / seconds_of(self.fn, self.a, self.b) / 1e9


def train_like_step(cfg: GraphConfig, dtype=jnp.float32):
  """Jitted value-and-grad w.r.t. parameters and input nodes (compute `dtype`)."""
  graph = RSTGGraph(cfg, dtype=dtype)

  def loss(p, x):
    return jnp.mean(jnp.square(graph.apply({"params": p}, x).astype(jnp.float32)))

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def prepared_step(cfg: GraphConfig, batch: int, frames: int):
  """(train-like step, params, nodes [B, T, N, D], the step's FLOPs), compiled and run
  once; the same random nodes and parameters for every setting."""
  nodes = jax.random.normal(jax.random.key(0), (batch, frames, cfg.num_nodes,
                                                cfg.node_feat_dim))
  params = jax.jit(RSTGGraph(cfg).init)(jax.random.key(1), nodes)["params"]
  step = train_like_step(cfg)
  # XLA's cost analysis counts a loop body once; xla_flops adds every iteration back.
  flops = model_report.xla_flops(step, params, nodes)
  seconds_of(step, params, nodes)  # warm-up (and compile)
  return step, params, nodes, flops


def bench_graph(cfg: GraphConfig, batch: int, frames: int, repeats: int,
                matmul: Matmul, ceiling: bool = False) -> dict:
  step, params, nodes, flops = prepared_step(cfg, batch, frames)
  times, mm_rates, ratios = [], [], []
  for _ in range(repeats):
    mm = matmul.gflops_per_s()
    seconds = seconds_of(step, params, nodes)
    times.append(seconds)
    mm_rates.append(mm)
    ratios.append(flops / seconds / 1e9 / mm)
  seconds = statistics.median(times)
  row = {"batch": batch, "frames": frames, "scan": cfg.scan, "seconds": seconds,
         "clips_per_s": batch / seconds, "gflop_per_step": flops / 1e9,
         "gflops_per_s": flops / seconds / 1e9,
         "matmul_gflops_per_s": statistics.median(mm_rates),
         "ratio": statistics.median(ratios)}
  if ceiling:
    inventory = matmul_ceiling.dot_inventory(jax.make_jaxpr(step)(params, nodes))
    dot_seconds, _, dots = matmul_ceiling.matmul_seconds(inventory)
    mm = statistics.median(matmul.gflops_per_s() for _ in range(3))
    row |= {"dot_seconds": dot_seconds, "ceiling_ratio": flops / dot_seconds / 1e9 / mm,
            "top_dots": [d | {"ratio": d["flops"] / d["seconds"] / 1e9 / mm}
                         for d in dots[:5]]}
  return row


def ab_compare(base: GraphConfig, field: str, batch: int, frames: int, repeats: int,
               matmul: Matmul) -> dict:
  """Interleaves `field`=False and True step by step (with the matmul), so that the load
  of a shared machine hits both alike; medians of times and of per-round ratios."""
  sides = {value: prepared_step(dataclasses.replace(base, **{field: value}), batch, frames)
           for value in (False, True)}
  times = {False: [], True: []}
  ratios = {False: [], True: []}
  for _ in range(repeats):
    for value, (step, params, nodes, flops) in sides.items():
      mm = matmul.gflops_per_s()
      sec = seconds_of(step, params, nodes)
      times[value].append(sec)
      ratios[value].append(flops / sec / 1e9 / mm)
  return {v: {"seconds": statistics.median(times[v]), "ratio": statistics.median(ratios[v]),
              "gflop_per_step": sides[v][3] / 1e9} for v in (False, True)} | {
      "speedup": statistics.median(a / b for a, b in zip(times[False], times[True]))}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--json", action="store_true",
                      help="print one JSON object for the paper shape and --scan")
  parser.add_argument("--scan", choices=["fused", "k_pass", "both"], default=None,
                      help="scan form(s) to time (default: both; with --json: the default)")
  parser.add_argument("--shape", choices=["paper", "small", "tiny", "both"], default=None)
  parser.add_argument("--matmul_n", type=int, default=4096, help="side of the reference matmul")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--ceiling", action="store_true",
                      help="also time the step's matmuls alone (the achievable ratio)")
  parser.add_argument("--ab", default=None,
                      help="a boolean GraphConfig field to A/B (False vs True), e.g. "
                      "pair_rewrite")
  args = parser.parse_args()

  base = GraphConfig()  # dot attention, scalewise, LN, K = 3, D = 512
  if args.shape == "tiny":
    base = GraphConfig(node_feat_dim=32, message_dims=32)
  scans = ["fused", "k_pass"] if (args.scan in (None, "both") and not args.json) else [
      args.scan or base.scan]
  shape_names = (["paper"] if args.json else ["paper", "small"]) if args.shape in (
      None, "both") else [args.shape]

  matmul = Matmul(args.matmul_n)
  if args.ab:
    for name in shape_names:
      for scan in scans:
        r = ab_compare(dataclasses.replace(base, scan=scan), args.ab, *SHAPES[name],
                       args.repeats, matmul)
        print(f"{name:5s} B={SHAPES[name][0]} T={SHAPES[name][1]} scan={scan:6s} "
              f"{args.ab}=False {r[False]['seconds']:.3f} s ratio {r[False]['ratio']:.2f} "
              f"({r[False]['gflop_per_step']:.1f} GFLOP) | True {r[True]['seconds']:.3f} s "
              f"ratio {r[True]['ratio']:.2f} ({r[True]['gflop_per_step']:.1f} GFLOP) | "
              f"time False/True {r['speedup']:.3f}", flush=True)
    return
  rows = []
  for name in shape_names:
    for scan in scans:
      row = bench_graph(dataclasses.replace(base, scan=scan), *SHAPES[name], args.repeats,
                        matmul, args.ceiling)
      row["shape"] = name
      rows.append(row)
      if not args.json:
        print(f"{name:5s} B={row['batch']} T={row['frames']} scan={scan:6s} "
              f"{row['clips_per_s']:8.2f} clips/s  {row['gflop_per_step']:7.1f} GFLOP/step  "
              f"{row['gflops_per_s']:7.1f} GFLOP/s  matmul {row['matmul_gflops_per_s']:6.1f} "
              f"GFLOP/s  ratio {row['ratio']:.2f}"
              + (f" = {row['ratio'] / TARGETS[name]:.2f} x target {TARGETS[name]}"
                 if name in TARGETS else ""), flush=True)
        if args.ceiling:
          print(f"      matmuls alone {row['dot_seconds']:.3f} s of the step's "
                f"{row['seconds']:.3f} s: ceiling ratio {row['ceiling_ratio']:.2f}; "
                "costliest:", flush=True)
          for d in row["top_dots"]:
            print(f"        {d['seconds'] * 1e3:7.1f} ms  {d['count']:4d}x  ratio "
                  f"{d['ratio']:.2f}  {d['dot']}", flush=True)
  if args.json:
    r = rows[0]
    print(json.dumps({"shape": r["shape"], "batch": r["batch"], "frames": r["frames"],
                      "gflop_per_step": r["gflop_per_step"], "clips_per_s": r["clips_per_s"],
                      "gflops_per_s": r["gflops_per_s"],
                      "matmul_gflops_per_s": r["matmul_gflops_per_s"], "ratio": r["ratio"],
                      "scan": r["scan"], "target_ratio": TARGETS["paper"],
                      "device": jax.devices()[0].device_kind}))
  else:
    print(f"device: {jax.devices()[0].device_kind}; targets: ratio >= "
          f"{TARGETS['paper']} (paper shape), >= {TARGETS['small']} (small)")


if __name__ == "__main__":
  main()
