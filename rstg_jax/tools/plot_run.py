"""Training and evaluation curves of one or more workdirs, and the last evaluation's classes.

  python -m rstg_jax.tools.plot_run --workdir=runs/demo
  python -m rstg_jax.tools.plot_run --workdir=runs/a --workdir=runs/b --labels=a,b --out=cmp

Reads what `rstg_jax.train.loop` leaves in a workdir: the TensorBoard events
(`train_loss`, `train_top1`, `train_learning_rate`, `clips_per_sec`, `eval_loss`,
`eval_top1`, `eval_top5`, ...), `summary.json` and the evaluation report files
(`<prefix>_confusion.json`, `<prefix>_per_class.json`; rstg_jax.train.eval_report).
Writes into `--out` (default `<first workdir>/plots`):

  curves.png              loss, top-1/top-5, learning rate and clips/s against the
                          step; every workdir in its own colour (train solid, eval
                          dashed/dotted)
  classes[_<label>].png   per-class accuracy of the last evaluation: the best and
                          the worst classes (from the newest `*_per_class.json`,
                          else summary.json's `<split>_per_class_top1`)
  confusion[_<label>].png the newest `*_confusion.json` drawn row-normalised (both
                          tasks write one at the end of a run; none for a
                          workdir without one)

`read_scalars` and `plot_curves` are also what experiments/syncmnist/compare.py calls.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

Series = tuple[np.ndarray, np.ndarray]  # (steps, values)

# (panel title, y label, [(tag, line style)]): a panel is drawn when a run has a tag.
PANELS = (
    ("loss", "loss", (("train_loss", "-"), ("eval_loss", "--"))),
    ("accuracy", "accuracy", (("train_top1", "-"), ("eval_top1", "--"),
                              ("eval_top5", ":"))),
    ("learning rate", "learning rate", (("train_learning_rate", "-"),)),
    ("throughput", "clips/s (training)", (("clips_per_sec", "-"),)),
)


def read_scalars(workdir: str) -> dict[str, Series]:
  """{tag: (steps, values)} of every scalar in the workdir's event files.

  A resumed run writes a new event file; a step logged twice keeps the value of
  the newer file. Reads with TensorBoard's event reader (no TensorFlow graph).
  """
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(workdir, "events.out.tfevents*")),
                 key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f"no events.out.tfevents* in {workdir}")
  values: dict[str, dict[int, float]] = {}
  for path in files:
    for event in event_file_loader.LegacyEventFileLoader(path).Load():
      if not event.HasField("summary"):
        continue
      for v in event.summary.value:
        if v.HasField("tensor"):
          arr = tensor_util.make_ndarray(v.tensor)
        elif v.HasField("simple_value"):
          arr = np.asarray(v.simple_value)
        else:
          continue
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
          continue
        values.setdefault(v.tag, {})[int(event.step)] = float(arr.reshape(()))
  return {tag: (np.asarray(sorted(d)), np.asarray([d[s] for s in sorted(d)]))
          for tag, d in values.items()}


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_curves(runs: Mapping[str, Mapping[str, Series]], path: str, title: str = "") -> None:
  """One 2x2 figure: loss, accuracy, learning rate, clips/s; one colour per run.

  Each panel's legend names the line styles (train solid, eval dashed/dotted);
  with several runs a legend below the panels names their colours.
  """
  plt = _pyplot()
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(2, 2, figsize=(11, 7.5 + 0.25 * (len(runs) > 1) * len(runs)),
                           dpi=100, layout="constrained")
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, (name, ylabel, tags) in zip(axes.flat, PANELS):
    styles = {}
    for r, scalars in enumerate(runs.values()):
      for tag, style in tags:
        if tag not in scalars:
          continue
        steps, vals = scalars[tag]
        marker = "o" if len(steps) <= 12 and tag.startswith("eval") else None
        ax.plot(steps, vals, style, color=colours[r % len(colours)], marker=marker, ms=4)
        styles[tag] = (style, marker)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if name == "learning rate":
      ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if styles:
      ax.legend([Line2D([], [], color="black" if len(runs) > 1 else colours[0], ls=st,
                        marker=mk, ms=4) for st, mk in styles.values()],
                list(styles), fontsize=7, loc="best", framealpha=0.6)
    else:
      ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes,
              color="grey")
  if len(runs) > 1:
    fig.legend([Line2D([], [], color=colours[r % len(colours)], lw=2)
                for r in range(len(runs))], list(runs), loc="outside lower center",
               ncols=min(len(runs), 2), fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.savefig(path)
  plt.close(fig)


def last_per_class(workdir: str) -> tuple[list[str], np.ndarray, np.ndarray | None, str] | None:
  """(class names, accuracy [C] (nan: no videos), counts [C] or None, source file).

  The newest `*_per_class.json` report, else summary.json's
  `<split>_per_class_top1`; None when neither exists.
  """
  reports = sorted(glob.glob(os.path.join(workdir, "*_per_class.json")), key=os.path.getmtime)
  if reports:
    with open(reports[-1], encoding="utf-8") as f:
      data = json.load(f)
    names = list(data)
    acc = np.asarray([np.nan if data[n]["accuracy"] is None else data[n]["accuracy"]
                      for n in names], np.float64)
    return names, acc, np.asarray([data[n]["count"] for n in names]), reports[-1]
  summary_path = os.path.join(workdir, "summary.json")
  if not os.path.exists(summary_path):
    return None
  with open(summary_path, encoding="utf-8") as f:
    summary = json.load(f)
  for key, value in summary.items():
    if key.endswith("_per_class_top1") and value:
      acc = np.asarray([np.nan if v is None else v for v in value], np.float64)
      names = _class_names(summary, len(acc))
      return names, acc, None, f"{summary_path} ({key})"
  return None


def _class_names(summary: Mapping[str, Any], num_classes: int) -> list[str]:
  if summary.get("task") == "sync_mnist":
    try:
      from rstg_datasets.sync_mnist import pair_labels  # pylint: disable=g-import-not-at-top
      names = pair_labels.label_names()
      if len(names) == num_classes:
        return names
    except ImportError:
      pass
  return [f"class {i}" for i in range(num_classes)]


def plot_classes(path: str, names: Sequence[str], accuracy: np.ndarray,
                 counts: np.ndarray | None = None, title: str = "", k: int = 10) -> None:
  """Horizontal bars of the k best and the k worst classes by accuracy."""
  plt = _pyplot()
  have = np.flatnonzero(~np.isnan(accuracy))
  order = have[np.argsort(-accuracy[have], kind="stable")]
  k = max(1, min(k, (len(order) + 1) // 2))
  groups = (("best", order[:k]), ("worst", order[::-1][:k]))
  longest = max((len(str(names[i])) for i in order), default=8)
  size = (8 + 0.12 * min(longest, 60), max(2.6, 0.9 + 0.32 * k))
  fig, axes = plt.subplots(1, 2, figsize=size, dpi=100, layout="constrained")
  for ax, (which, idx) in zip(axes, groups):
    labels = [f"{names[i]}" + (f" (n={int(counts[i])})" if counts is not None else "")
              for i in idx]
    ax.barh(range(len(idx)), accuracy[idx], color="#2a9d8f" if which == "best" else "#e76f51")
    ax.set_yticks(range(len(idx)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ties = int(np.sum(accuracy[order] == accuracy[idx[-1]]))
    ax.set_title(f"{which} {len(idx)} of {len(order)} classes"
                 + (f" ({ties} classes at {accuracy[idx[-1]]:.2f})" if ties > 1 else ""),
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    for y, i in enumerate(idx):
      ax.text(min(accuracy[i] + 0.01, 0.9), y, f"{accuracy[i]:.2f}", va="center", fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.savefig(path)
  plt.close(fig)


def plot_workdirs(workdirs: Sequence[str], out_dir: str,
                  labels: Sequence[str] | None = None) -> list[str]:
  """Writes the figures of the module docstring; returns their paths."""
  from rstg_jax.train import eval_report  # pylint: disable=g-import-not-at-top
  workdirs = [os.path.abspath(w) for w in workdirs]
  labels = list(labels) if labels else [os.path.basename(w.rstrip("/")) for w in workdirs]
  if len(labels) != len(workdirs):
    raise ValueError(f"{len(labels)} labels for {len(workdirs)} workdirs")
  os.makedirs(out_dir, exist_ok=True)
  runs = {label: read_scalars(w) for label, w in zip(labels, workdirs)}
  written = [os.path.join(out_dir, "curves.png")]
  plot_curves(runs, written[0], title=", ".join(workdirs) if len(workdirs) == 1 else "")
  for label, w in zip(labels, workdirs):
    suffix = "" if len(workdirs) == 1 else f"_{label}"
    classes = last_per_class(w)
    if classes is not None:
      names, acc, counts, source = classes
      path = os.path.join(out_dir, f"classes{suffix}.png")
      plot_classes(path, names, acc, counts,
                   title=f"{label}: per-class accuracy of the last evaluation "
                         f"(mean {np.nanmean(acc):.3f}; {os.path.basename(source)})")
      written.append(path)
    confusions = sorted(glob.glob(os.path.join(w, "*_confusion.json")), key=os.path.getmtime)
    if confusions:
      matrix, class_names = eval_report.read_confusion_json(confusions[-1])
      path = os.path.join(out_dir, f"confusion{suffix}.png")
      eval_report.plot_confusion_png(path, matrix, class_names,
                                     title=f"{label}: {os.path.basename(confusions[-1])}")
      written.append(path)
  return written


def main(argv: Sequence[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  workdirs = [w for item in f.workdir for w in item.split(",") if w]
  out = f.out or os.path.join(workdirs[0], "plots")
  for path in plot_workdirs(workdirs, out, f.labels):
    print(path)


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_multi_string("workdir", None, "Workdir(s) of rstg_jax.main (repeat the "
                            "flag or separate with commas to compare runs).")
  flags.DEFINE_list("labels", None, "Legend name of each workdir (default: folder names).")
  flags.DEFINE_string("out", None, "Output folder (default: <first workdir>/plots).")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
