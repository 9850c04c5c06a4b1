"""XLA temporary memory of the graph's train-like step, with and without remat.

  python experiments/graph_memory.py                    # paper width, B=8, T = 8, 16, 32
  python experiments/graph_memory.py --frames=8,16 --scan=k_pass
  python experiments/graph_memory.py --scan=fused --no-wavefront  # step-by-step fused scan

Compiles (does not run) a jitted value-and-grad of RSTGGraph on node features
[B, T, 14, D] and prints `compiled.memory_analysis().temp_size_in_bytes` (the XLA
temporaries, i.e. activations kept for the backward pass and scratch; arguments and
outputs excluded) per scan form, remat setting and T. Compile-only, so it runs on any CPU.
"""
from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp

from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph


def temp_bytes(cfg: GraphConfig, batch: int, frames: int, dtype) -> int:
  graph = RSTGGraph(cfg, dtype=dtype)
  nodes = jax.ShapeDtypeStruct((batch, frames, cfg.num_nodes, cfg.node_feat_dim), jnp.float32)
  params = jax.eval_shape(graph.init, jax.random.key(0), nodes)["params"]

  def loss(p, x):
    return jnp.mean(jnp.square(graph.apply({"params": p}, x).astype(jnp.float32)))

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  return step.lower(params, nodes).compile().memory_analysis().temp_size_in_bytes


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--frames", default="8,16,32")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--scan", choices=["fused", "k_pass", "both"], default="both")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument("--wavefront", action=argparse.BooleanOptionalAction, default=True,
                      help="the fused scan's skewed schedule (GraphConfig.wavefront)")
  args = parser.parse_args()
  scans = ["fused", "k_pass"] if args.scan == "both" else [args.scan]
  frames = [int(t) for t in args.frames.split(",")]
  dtype = jnp.dtype(args.dtype)
  print(f"B={args.batch} N=14 D=512 K=3 {args.dtype}, wavefront={args.wavefront}; XLA "
        f"temp MiB on {jax.devices()[0].device_kind}")
  for scan in scans:
    for t in frames:
      row = {}
      for remat in (False, True):
        cfg = dataclasses.replace(GraphConfig(), scan=scan, remat=remat,
                                  wavefront=args.wavefront)
        row[remat] = temp_bytes(cfg, args.batch, t, dtype) / 2 ** 20
      print(f"scan={scan:6s} T={t:3d}  no-remat {row[False]:9.1f} MiB  remat "
            f"{row[True]:9.1f} MiB  ratio {row[True] / row[False]:.2f}", flush=True)


if __name__ == "__main__":
  main()
