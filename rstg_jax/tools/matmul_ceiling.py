"""What a step's matmuls alone cost: the ceiling of its FLOP rate on this machine.

The benchmarks compare a step's rate (XLA FLOPs / time) with one large square matmul.
A step can only reach that rate if its own matmuls do, at their own shapes. This module
lists every `dot_general` a function runs (scan bodies counted once per iteration),
times each distinct one alone, and sums: the step's time if everything but its
matmuls were free.

  inv = dot_inventory(jax.make_jaxpr(step)(params, x))
  t = matmul_seconds(inv)       # sum over dots of count x (time of that dot alone)

Meaningful for large matmuls (the paper shape: milliseconds each). A dot of a few
microseconds costs more alone than inside a compiled step (call overhead), so at tiny
shapes the sum can exceed the step itself.
"""
from __future__ import annotations

import collections
import dataclasses
import statistics
import time
from typing import Any

import jax
from jax.extend import core as jex_core
import numpy as np


@dataclasses.dataclass(frozen=True)
class Dot:
  """One distinct dot_general: operand shapes and dtypes, dimension numbers, output dtype."""
  lhs: tuple[int, ...]
  rhs: tuple[int, ...]
  lhs_dtype: str
  rhs_dtype: str
  dimension_numbers: Any
  out_dtype: str | None

  @property
  def flops(self) -> float:
    """2 x (output elements) x (contracted size)."""
    (lc, rc), (lb, _) = self.dimension_numbers
    contracted = int(np.prod([self.lhs[i] for i in lc]))
    batch = int(np.prod([self.lhs[i] for i in lb]))
    lhs_free = int(np.prod([d for i, d in enumerate(self.lhs) if i not in (*lc, *lb)]))
    rhs_free = int(np.prod([d for i, d in enumerate(self.rhs) if i not in (*rc, *lb)]))
    return 2.0 * batch * lhs_free * rhs_free * contracted

  def __str__(self) -> str:
    (lc, rc), (lb, rb) = self.dimension_numbers
    return (f"{self.lhs_dtype}{list(self.lhs)} x {self.rhs_dtype}{list(self.rhs)} "
            f"contract {tuple(lc)}/{tuple(rc)} batch {tuple(lb)}/{tuple(rb)}")


def dot_inventory(closed_jaxpr) -> collections.Counter:
  """{Dot: how many times it runs} in a ClosedJaxpr, scan bodies x their length.

  A while loop's body counts once (its trip count is not static); the graph and the
  models here loop with scan only.
  """
  counts: collections.Counter = collections.Counter()

  def walk(jaxpr, times: int) -> None:
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        lhs, rhs = (v.aval for v in eqn.invars)
        out = eqn.params.get("preferred_element_type")
        counts[Dot(tuple(lhs.shape), tuple(rhs.shape), str(lhs.dtype), str(rhs.dtype),
                   eqn.params["dimension_numbers"],
                   None if out is None else str(np.dtype(out)))] += times
        continue
      inner = times * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
      for sub in jex_core.jaxprs_in_params(eqn.params):
        walk(sub.jaxpr if hasattr(sub, "jaxpr") else sub, inner)

  walk(closed_jaxpr.jaxpr, 1)
  return counts


def time_dot(dot: Dot, repeats: int = 5, min_seconds: float = 0.05) -> float:
  """Median seconds of `dot` alone, jitted, on random inputs (after one warm-up).

  Each sample dispatches enough calls back to back to last `min_seconds` and waits for
  the last only: inside a step a small dot pays no dispatch, so neither should it here.
  """
  fn = jax.jit(lambda a, b: jax.lax.dot_general(
      a, b, dot.dimension_numbers, preferred_element_type=dot.out_dtype))
  a = jax.random.normal(jax.random.key(0), dot.lhs).astype(dot.lhs_dtype)
  b = jax.random.normal(jax.random.key(1), dot.rhs).astype(dot.rhs_dtype)
  t0 = time.perf_counter()
  jax.block_until_ready(fn(a, b))
  calls = max(1, min(1000, int(min_seconds / max(time.perf_counter() - t0, 1e-6))))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = [fn(a, b) for _ in range(calls)]
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t0) / calls)
  return statistics.median(times)


def matmul_seconds(inventory: collections.Counter, repeats: int = 5
                   ) -> tuple[float, float, list[dict]]:
  """(seconds, FLOPs) of every dot in `inventory` run alone, and per-dot rows
  {dot, count, flops, seconds (all of its runs)}, largest time first."""
  rows = []
  for dot, count in inventory.items():
    seconds = time_dot(dot, repeats) * count
    rows.append({"dot": str(dot), "count": count, "flops": dot.flops * count,
                 "seconds": seconds})
  rows.sort(key=lambda r: -r["seconds"])
  return sum(r["seconds"] for r in rows), sum(r["flops"] for r in rows), rows
