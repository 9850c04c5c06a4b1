"""RSTG against motion-blind and motion-aware baselines on SyncMNIST, same budget.

  python experiments/syncmnist/compare.py --seed=0 --workdir=runs/sync/s0 \
      --models=rstg_res_nopos,rstg,conv3d,nonlocal,convlstm,lstm,mean

Trains every model's configs/syncmnist_*.py at --variant (default 'cpu', the CPU
synchrony setting) with the same overrides (data, steps, batch, width,
optimiser, seed, init_from), one after the other in this process, then writes
into --workdir:
  results.json   per model: test_top1, test_top5, test_pair_top1, test_loss, steps,
                 train_seconds, params, seed, setup, eval_history
  results.md     the same as a markdown table
  accuracy.png   test top-1 against training steps, one curve per model
  curves.png     loss, top-1/top-5, learning rate and clips/s of every model
                 (rstg_jax.tools.plot_run over the sub-folders' events)
Each model trains in its own sub-folder; re-running resumes unfinished runs and
skips finished ones (it reads their summary.json).
"""
from __future__ import annotations

import json
import os
import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from rstg_configs import common as configs_common

_REPO = pathlib.Path(__file__).resolve().parents[2]
# name: (config file, overrides of config.model)
# The paper's graph; the :cpu variant's own RSTG is "rstg_res_nopos".
_PAPER_GRAPH = {"graph.use_positional_emb": True, "graph.space_residual": False}
_SERIAL = {"combine": "serial", "residual_norm": "none"}
MODELS = {
    "rstg": ("syncmnist_rstg.py", {**_SERIAL, **_PAPER_GRAPH}),
    "rstg_plus": ("syncmnist_rstg.py", {"combine": "plus", "residual_norm": "LN",
                                        **_PAPER_GRAPH}),
    "mean": ("syncmnist_mean_baseline.py", {}),
    "lstm": ("syncmnist_lstm_baseline.py", {}),
    "convlstm": ("syncmnist_convlstm_baseline.py", {}),
    "conv3d": ("syncmnist_conv3d_baseline.py", {}),
    "nonlocal": ("syncmnist_nonlocal_baseline.py", {}),
    "rstg_space": ("syncmnist_rstg.py", {**_SERIAL, **_PAPER_GRAPH, "graph.stages": "space"}),
    "rstg_time": ("syncmnist_rstg.py", {**_SERIAL, **_PAPER_GRAPH, "graph.stages": "time"}),
    "rstg_nopos": ("syncmnist_rstg.py", {**_SERIAL, **_PAPER_GRAPH,
                                         "graph.use_positional_emb": False}),
    # Not in the paper: the space stage adds to the node states instead of replacing them.
    "rstg_res": ("syncmnist_rstg.py", {**_SERIAL, **_PAPER_GRAPH,
                                       "graph.space_residual": True}),
    # Both changes: the RSTG of configs/syncmnist_rstg.py:cpu.
    "rstg_res_nopos": ("syncmnist_rstg.py", {**_SERIAL, "graph.space_residual": True,
                                             "graph.use_positional_emb": False}),
    # The paper's Something-Something form on the conv3d baseline's backbone:
    # I3D-style backbone + RSTG-to-vec added to its pooled vector (plus, with
    # the zero-initialised residual LN: it starts as the conv3d baseline).
    "rstg_conv3d": ("syncmnist_rstg.py", {"combine": "plus", "residual_norm": "LN",
                                          "backbone.temporal_kernel": 3, **_PAPER_GRAPH}),
}
LABELS = {"rstg": "RSTG, serial (the paper's combination)",
          "rstg_plus": "RSTG (plus: mean baseline + graph)",
          "mean": "mean over space-time", "lstm": "LSTM over pooled frames",
          "convlstm": "Conv+LSTM over the feature map",
          "conv3d": "3-D conv backbone, mean over space-time",
          "nonlocal": "3-D conv backbone + Non-Local block",
          "rstg_space": "RSTG space-only (no LSTMs)",
          "rstg_time": "RSTG time-only (no messages)",
          "rstg_nopos": "RSTG without positional embeddings",
          "rstg_res": "RSTG, residual space stage (not the paper's)",
          "rstg_res_nopos": "RSTG, residual space stage, no positional embeddings (:cpu)",
          "rstg_conv3d": "3-D conv backbone + RSTG (plus)"}

_WORKDIR = flags.DEFINE_string("workdir", "runs/syncmnist_compare", "Output folder.")
_MODELS = flags.DEFINE_list("models", ["rstg_res_nopos", "rstg", "conv3d", "nonlocal",
                                       "convlstm", "lstm", "mean"],
                            f"Which models to train, of {list(MODELS)}.")
_VARIANT = flags.DEFINE_string(
    "variant", "cpu", "Config variant every model starts from (configs/"
    "syncmnist_common.py): 'cpu' (the CPU synchrony setting) or 'tiny' (the "
    "paper's data at 64x64, the first comparison of the README).")
# Unset flags keep the variant's value.
_STEPS = flags.DEFINE_integer("steps", None, "Training steps of every model.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", None, "Steps between test evaluations.")
_WARMUP = flags.DEFINE_integer("warmup_steps", None, "Linear warm-up before the cosine decay.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Global batch size.")
_WIDTH = flags.DEFINE_integer("width", None, "SimpleConv width.")
_GRAPH_WIDTH = flags.DEFINE_integer(
    "graph_width", None, "Graph node and message width = LSTM units (dense "
    "projections map between it and --width).")
_INPUT_SCALE = flags.DEFINE_float(
    "input_scale", None, "Pixel factor of SimpleConv (1.0: raw 0-255, the paper).")
_LR = flags.DEFINE_float("learning_rate", None, "Adam peak learning rate.")
_GRAPH_LR_FACTOR = flags.DEFINE_float(
    "graph_lr_factor", None, "Learning-rate factor of the RSTG graph (:cpu: 1.0; "
    "on grey digits the graph output collapsed to a constant within ~100 steps at "
    "3e-3 and 0.1 fixed it, experiments/syncmnist/README.md).")
_DATA_CONFIG = flags.DEFINE_string("data_config", None, "SyncMNIST builder config.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", None, "Resize the train split.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data dir (None: the default).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every run.")
_INIT_FROM = flags.DEFINE_string(
    "init_from", "", "Checkpoint every model starts from where its tensors fit, e.g. "
    "the digit-presence backbone of pretrain_backbone.py ('' = from scratch).")
_SET = flags.DEFINE_list(
    "set", [], "More config overrides for every model, e.g. graph.use_norm=none "
    "(graph.* only affects the RSTG models).")


def _parent(c, key: str):
  """(the ConfigDict holding dotted `key`, the last part of `key`)."""
  node = c
  for part in key.split(".")[:-1]:
    node = node[part]
  return node, key.split(".")[-1]


def _set_path(c, key: str, value) -> None:
  node, leaf = _parent(c, key)
  node[leaf] = value


def _config(model: str):
  config_file = _REPO / "configs" / MODELS[model][0]
  c = configs_common.load_config_file(config_file).get_config(_VARIANT.value)
  for key, value in MODELS[model][1].items():
    _set_path(c.model, key, value)
  c.seed = _SEED.value
  c.init_from = _INIT_FROM.value
  overrides = {
      "model.backbone.width": _WIDTH.value,
      "model.backbone.input_scale": _INPUT_SCALE.value,
      "model.lstm.units": _GRAPH_WIDTH.value,
      "model.graph.node_feat_dim": _GRAPH_WIDTH.value,
      "model.graph.message_dims": _GRAPH_WIDTH.value,
      "data.config": _DATA_CONFIG.value,
      "data.num_train": _NUM_TRAIN.value,
      "data.data_dir": _DATA_DIR.value,
      "batch_size": _BATCH.value,
      "optimizer.learning_rate": _LR.value,
      "optimizer.graph_lr_factor": _GRAPH_LR_FACTOR.value,
      "num_train_steps": _STEPS.value,
      "optimizer.warmup_steps": _WARMUP.value,
      "eval_every_steps": _EVAL_EVERY.value,
      "checkpoint.every_steps": _EVAL_EVERY.value,
  }
  for key, value in overrides.items():
    if value is not None:
      _set_path(c, key, value)
  c.optimizer.warmup_steps = min(c.optimizer.warmup_steps, c.num_train_steps // 2)
  for item in _SET.value:
    key, value = item.split("=", 1)
    old, leaf = _parent(c, key)
    if leaf not in old:
      raise ValueError(f"--set {item}: no config field {key!r}")
    kind = type(old[leaf])
    old[leaf] = (value.lower() in ("1", "true") if kind is bool else
                 kind(value) if old[leaf] is not None else value)
  return c


def _write_table(results: dict, workdir: str) -> str:
  lines = ["| model | test top-1 | test top-5 | sync-pair top-1 | steps | "
           "train wall time (s) | parameters |",
           "|---|---|---|---|---|---|---|"]
  for m, r in results.items():
    pair = r.get("test_pair_top1")
    pair = "n/a" if pair is None else f"{pair:.3f}"
    lines.append(f"| {LABELS[m]} | {r['test_top1']:.3f} | {r['test_top5']:.3f} | "
                 f"{pair} | {r['steps']} | {r['train_seconds']:.0f} | "
                 f"{r.get('params', r.get('num_params')):,} |")
  table = "\n".join(lines) + "\n"
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(table)
  return table


def _plot(results: dict, workdir: str, title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, ax_pair) = plt.subplots(1, 2, figsize=(14, 4.4))
  colours = plt.get_cmap("tab20").colors
  for i, (m, r) in enumerate(results.items()):
    hist = r["eval_history"]
    # Solid: RSTG and its variants; dashed: the baselines. One legend (right)
    # names every model with its final synchronous-pair and top-1 accuracy.
    style = dict(marker="o", ms=4, color=colours[(2 * i) % 20 + (2 * i) // 20 % 2],
                 ls="-" if m.startswith("rstg") else "--")
    ax.plot([h["step"] for h in hist], [h["top1"] for h in hist], **style)
    pairs = [(h["step"], h["pair_top1"]) for h in hist if "pair_top1" in h]
    if pairs:
      ax_pair.plot(*zip(*pairs), **style, label=f"{LABELS[m]} (pair {pairs[-1][1]:.2f}, "
                   f"top-1 {r['test_top1']:.2f})")
  ax.axhline(1 / 46, color="grey", ls=":", label="chance (1/46)")
  # Naming the digits but not which two move together: one of three pairs.
  ax.axhline(1 / 3, color="grey", ls="--", lw=0.8,
             label="digits known, sync unknown (~1/3)")
  ax.set_ylabel("test top-1 accuracy (46 classes)")
  ax.set_ylim(0, max(0.5, 1.1 * max(
      h["top1"] for r in results.values() for h in r["eval_history"])))
  ax.legend(fontsize=7, loc="upper left")
  ax_pair.axhline(1 / 3, color="grey", ls="--", lw=0.8,
                  label="motion ignored (1/3 with 3 digits)")
  ax_pair.set_ylabel("synchronous pair vs other pairs of present digits")
  ax_pair.set_ylim(0, 1)
  ax_pair.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
  for a in (ax, ax_pair):
    a.set_xlabel("training step")
    a.grid(alpha=0.3)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "accuracy.png"), dpi=120)


def main(argv):
  del argv
  from rstg_jax import log_filters  # pylint: disable=g-import-not-at-top
  from rstg_jax.train import loop  # pylint: disable=g-import-not-at-top
  log_filters.quiet_library_logs()
  unknown = [m for m in _MODELS.value if m not in MODELS]
  if unknown:
    raise SystemExit(f"--models: unknown {unknown}; choose from {list(MODELS)}")
  try:
    _config(_MODELS.value[0])
  except (ValueError, KeyError) as e:
    raise SystemExit(f"compare.py: {e}") from None
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  results = {}
  for model in _MODELS.value:
    run_dir = os.path.join(workdir, model)
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary_path):
      with open(summary_path) as f:
        summary = json.load(f)
      if summary["steps"] == _config(model).num_train_steps:
        logging.info("%s: already trained, reading %s", model, summary_path)
        results[model] = summary
        continue
    t0 = time.time()
    results[model] = loop.train_and_evaluate(_config(model), run_dir)
    logging.info("%s: test top-1 %.3f in %.0f s", model, results[model]["test_top1"],
                 time.time() - t0)
  c = _config(_MODELS.value[0])
  setup = (f"SyncMNIST {c.data.config}"
           + (f", graph use_norm {c.model.graph.use_norm}" if "rstg" in _MODELS.value else "")
           + (f" (train resized to {c.data.num_train})" if c.data.num_train else "")
           + f", width {c.model.backbone.width} (graph/LSTM {c.model.lstm.units}), "
           f"pixels x{c.model.backbone.input_scale:.4g}, batch {c.batch_size}, "
           f"{c.optimizer.name} lr {c.optimizer.learning_rate:g} (graph x"
           f"{c.optimizer.graph_lr_factor:g}), {c.num_train_steps} steps"
           + (f", init_from {c.init_from}" if c.init_from else "") + f", seed {c.seed}"
           + (f", --set {','.join(_SET.value)}" if _SET.value else ""))
  # One entry per model, keyed by its --models name (aggregate.py reads these).
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({m: {**{k: r.get(k) for k in ("test_top1", "test_top5", "test_pair_top1",
                                            "test_loss", "steps", "train_seconds")},
                   "params": r.get("num_params"), "seed": _SEED.value, "setup": setup,
                   "eval_history": r.get("eval_history")}
               for m, r in results.items()}, f, indent=1)
  table = _write_table(results, workdir)
  _plot(results, workdir, setup)
  from rstg_jax.tools import plot_run  # pylint: disable=g-import-not-at-top
  plot_run.plot_curves({LABELS[m]: plot_run.read_scalars(os.path.join(workdir, m))
                        for m in results}, os.path.join(workdir, "curves.png"), title=setup)
  print(setup)
  print(table)


if __name__ == "__main__":
  app.run(main)
