"""Parameter counts and FLOPs per clip of the Something-Something configs.

  python -m rstg_jax.tools.model_report --config=configs/smt_i3d_rstg_final.py
  python -m rstg_jax.tools.model_report --all            # every configs/smt_*.py
  python -m rstg_jax.tools.model_report --all --json     # JSON list
  python -m rstg_jax.tools.model_report --config=configs/smt_i3d.py:tiny

Nothing is allocated: parameters come from `jax.eval_shape`, FLOPs from XLA's cost
analysis of the lowered (not compiled) inference function for one clip (batch 1, the
config's frames x image size). XLA counts a multiply-add as 2 FLOPs, and counts the body
of a loop once; the graph's recurrence is a scan over time, so `xla_flops` adds
(length - 1) x the cost of every scan body (recursively) to get the true count.
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Any, Callable, Mapping

from absl import app
from absl import flags
import jax
from jax.extend import core as jex_core
import jax.numpy as jnp
import ml_collections
import numpy as np

from rstg_configs import common as configs_common
from rstg_jax.models.classifiers import smt_model

FLAGS = flags.FLAGS


def _define_flags():
  # Only when run as a program: benchmarks import xla_flops / load_config.
  flags.DEFINE_multi_string(
      "config", [], "Config file(s), 'path' or 'path:arg' (e.g. configs/smt_i3d.py:tiny).")
  flags.DEFINE_bool("all", False, "Report every configs/smt_*.py.")
  flags.DEFINE_bool("json", False, "Print a JSON list instead of a table.")
  flags.DEFINE_string("config_dir", None,
                      "Folder searched by --all (default: the repository's configs/).")
  flags.DEFINE_string("variant", "", "get_config argument used with --all.")


GRAPH_PARTS = ("graph_res2", "graph_res3", "graph_res4", "graph_res5", "graph_final")


def load_config(spec: str) -> ml_collections.ConfigDict:
  """'path' or 'path:arg' (a bare name such as 'smt_i3d:tiny' is looked up in configs/)."""
  return configs_common.get_config(spec)


def default_config_dir() -> str:
  return configs_common.CONFIG_DIR


def all_config_paths(config_dir: str | None = None) -> list[str]:
  config_dir = config_dir or default_config_dir()
  paths = sorted(glob.glob(os.path.join(config_dir, "smt_*.py")))
  paths = [p for p in paths  # smt_common.py is shared, not an experiment
           if os.path.splitext(os.path.basename(p))[0] not in configs_common.SHARED_MODULES]
  if not paths:
    raise FileNotFoundError(f"no smt_*.py configs in {config_dir!r}")
  return paths


def _count(tree: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def param_breakdown(params: Mapping[str, Any]) -> dict[str, int]:
  """{'backbone', <each graph>, 'head', 'total'} parameter counts of a VideoClassifier.

  'backbone' excludes the graphs inserted inside it; 'head' is `pred`.
  """
  parts = {}
  backbone = dict(params.get("backbone", {}))
  for name in GRAPH_PARTS:
    tree = backbone.pop(name, None) if name != "graph_final" else params.get(name)
    if tree is not None:
      parts[name] = _count(tree)
  parts = {"backbone": _count(backbone), **parts, "head": _count(params.get("pred", {}))}
  parts["total"] = _count(params)
  return parts


def _clip_shape(config: Mapping[str, Any], batch: int = 1) -> tuple[int, ...]:
  ds = config["data"]
  return (batch, ds["num_frames"], ds["image_size"], ds["image_size"], 3)


def _abstract_variables(model, shape) -> Any:
  video = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), video)


def _scan_extra_flops(jaxpr) -> float:
  """FLOPs XLA misses in `jaxpr`: each scan body beyond its first iteration."""
  extra = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scan":
      body = eqn.params["jaxpr"]
      # XLA saw the body once (without its own missing iterations).
      extra += ((eqn.params["length"] - 1) * closed_jaxpr_flops(body)
                + _scan_extra_flops(body.jaxpr))
    else:
      for sub in jex_core.jaxprs_in_params(eqn.params):
        extra += _scan_extra_flops(sub)
  return extra


def closed_jaxpr_flops(closed) -> float:
  """FLOPs of a ClosedJaxpr, with scan bodies counted once per iteration."""
  args = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
  fn = jex_core.jaxpr_as_fun(closed)
  raw = jax.jit(fn).lower(*args).cost_analysis()["flops"]
  return float(raw) + _scan_extra_flops(closed.jaxpr)


def xla_flops(fn: Callable[..., Any], *args: Any) -> float:
  """FLOPs of `fn(*args)` (arrays or ShapeDtypeStructs) by XLA's cost analysis."""
  return closed_jaxpr_flops(jax.make_jaxpr(fn)(*args))


def train_step_and_flops(config: Mapping[str, Any], model: Any, variables: Any,
                         batch: Mapping[str, Any]) -> tuple[Any, Callable, float]:
  """(TrainState, the trainer's un-jitted step, FLOPs of one step on `batch`) of a
  model with the config's optimiser and loss reduction: what the benchmarks time."""
  # Imported here: the report itself needs no optimiser or training code.
  from rstg_jax.train import optimizers, steps  # pylint: disable=g-import-not-at-top
  from rstg_jax.train.train_state import TrainState  # pylint: disable=g-import-not-at-top
  tx = optimizers.make_optimizer(config.optimizer, config.optimizer.learning_rate)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                            batch_stats=variables.get("batch_stats", {}))
  step_fn = steps.make_train_step(base_rng=jax.random.key(0),
                                  loss_reduction=config.loss_reduction)
  return state, step_fn, xla_flops(step_fn, state, batch)


def time_steps(step: Callable, state: Any, batch: Any, reps: int) -> tuple[Any, Any, float]:
  """Runs `step(state, batch) -> (state, metrics)` once to compile and warm up, then
  `reps` (>= 1) timed times: (last state, last metrics, seconds per step)."""
  state, metrics = step(state, batch)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(reps):
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  return state, metrics, (time.perf_counter() - start) / reps


def report(config: Mapping[str, Any], name: str = "") -> dict[str, Any]:
  """Parameters (by part) and forward GFLOPs per clip of one config."""
  model = smt_model.build_model(config["model"])
  shape = _clip_shape(config)
  variables = _abstract_variables(model, shape)
  video = jax.ShapeDtypeStruct(shape, jnp.float32)
  flops = xla_flops(lambda v, x: model.apply(v, x, train=False), variables, video)
  parts = param_breakdown(variables["params"])
  return {"config": name, "params": parts["total"], "params_by_part": parts,
          "gflops": round(flops / 1e9, 2), "clip": list(shape[1:])}


def format_table(rows: list[dict[str, Any]]) -> str:
  """Markdown table: params in millions, GFLOPs (and G multiply-adds) per clip."""
  graph_cols = [g for g in GRAPH_PARTS if any(g in r["params_by_part"] for r in rows)]
  head = (["config", "backbone M"] + [f"{g} M" for g in graph_cols]
          + ["head M", "total M", "clip", "GFLOPs", "GMACs"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    p = r["params_by_part"]
    cells = [r["config"], f"{p['backbone'] / 1e6:.2f}"]
    cells += [f"{p[g] / 1e6:.2f}" if g in p else "-" for g in graph_cols]
    cells += [f"{p['head'] / 1e6:.3f}", f"{p['total'] / 1e6:.2f}",
              "x".join(map(str, r["clip"])), f"{r['gflops']:.1f}",
              f"{r['gflops'] / 2:.1f}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  specs = list(FLAGS.config)
  if FLAGS.all:
    suffix = f":{FLAGS.variant}" if FLAGS.variant else ""
    specs += [p + suffix for p in all_config_paths(FLAGS.config_dir)]
  if not specs:
    raise app.UsageError("give --config=<file>[:arg] (repeatable) or --all")
  rows = []
  for spec in specs:
    name = os.path.splitext(os.path.basename(spec.partition(":")[0]))[0]
    arg = spec.partition(":")[2]
    rows.append(report(load_config(spec), name + (f":{arg}" if arg else "")))
    if not FLAGS.json:
      print(f"done {rows[-1]['config']}", file=sys.stderr)
  print(json.dumps(rows, indent=1) if FLAGS.json else format_table(rows))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
