"""Gradient error of the graph's compute dtypes against a float64 run.

  python experiments/graph_grad_error.py                 # B=2, T=4, D=512, K=3
  python experiments/graph_grad_error.py --batch=8 --frames=16

Per parameter leaf (and the input nodes): max |g - g64| / max |g64| of d(loss)/d(leaf),
loss = mean(out^2) of RSTGGraph, for dtype float32 and bfloat16 (and pair_rewrite on/off),
against the literal float64 graph. Prints the median and the worst leaf.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from rstg_jax.models.graph.graph_config import GraphConfig
from rstg_jax.models.graph.rstg_graph import RSTGGraph


def grads(cfg, params, nodes, dtype):
  graph = RSTGGraph(cfg, dtype=dtype)

  def loss(p, x):
    return jnp.mean(jnp.square(graph.apply({"params": p}, x).astype(jnp.float32)))

  return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, nodes)


def leaf_errors(got, want):
  top = max(float(np.max(np.abs(w))) for w in jax.tree.leaves(want))
  return [float(np.max(np.abs(np.asarray(g, np.float64) - w))
                / max(float(np.max(np.abs(w))), 1e-6 * top))
          for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want))]


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--frames", type=int, default=4)
  parser.add_argument("--scan", default="k_pass")
  args = parser.parse_args()
  base = GraphConfig(scan=args.scan)
  nodes = jax.random.normal(jax.random.key(0), (args.batch, args.frames, 14, 512))
  params = jax.jit(RSTGGraph(base).init)(jax.random.key(1), nodes)["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda p: p + 0.05 * rng.normal(size=p.shape).astype(np.float32),
                        params)
  with jax.enable_x64(True):
    ref = grads(dataclasses.replace(base, pair_rewrite=False),
                jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params),
                jnp.asarray(nodes, jnp.float64), jnp.float64)
    ref = jax.tree.map(np.asarray, ref)
  print(f"B={args.batch} T={args.frames} scan={args.scan}: per-leaf max|g - g64| / max|g64|")
  for dtype in ("float32", "bfloat16"):
    for rewrite in (False, True):
      cfg = dataclasses.replace(base, pair_rewrite=rewrite)
      errs = leaf_errors(grads(cfg, params, nodes, jnp.dtype(dtype)), ref)
      print(f"{dtype:9s} pair_rewrite={rewrite!s:5s} median {statistics.median(errs):.2e} "
            f"worst {max(errs):.2e} ({len(errs)} leaves)", flush=True)


if __name__ == "__main__":
  main()
