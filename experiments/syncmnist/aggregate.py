"""Mean and spread over seeds of several `compare.py` runs.

  for s in 0 1 2; do python experiments/syncmnist/compare.py --seed=$s --workdir=runs/sync/s$s; done
  python experiments/syncmnist/aggregate.py --workdirs=runs/sync/s0,runs/sync/s1,runs/sync/s2 \
      --out=runs/sync

Reads each workdir's results.json and writes into --out:
  seeds.json   per model: the seeds, and for test_top1, test_pair_top1, train_seconds
               and params their per-seed values, mean and standard deviation
  seeds.md     the same as a markdown table (mean ± std, min-max)
  seeds.png    synchronous-pair accuracy against steps, the mean over seeds with the
               range shaded, one colour per model
A model missing from some workdirs is reported over the seeds that have it, so runs
of one seed may be spread over several workdirs (e.g. a later session's extra models);
the same model and seed in two workdirs is refused rather than counted twice.
"""
from __future__ import annotations

import json
import os

from absl import app
from absl import flags
import numpy as np

_WORKDIRS = flags.DEFINE_list("workdirs", None, "compare.py workdirs, one per seed.")
_OUT = flags.DEFINE_string("out", None, "Folder for seeds.json / .md / .png.")
_MODELS = flags.DEFINE_list(
    "models", None, "Models to summarise, in this order (default: every model found).")
FIELDS = ("test_top1", "test_pair_top1", "train_seconds", "params")


def load(workdirs: list[str]) -> dict[str, list[dict]]:
  """{model: [its results.json entry of every workdir that has it]}."""
  runs: dict[str, list[dict]] = {}
  seen: dict[tuple, str] = {}
  for workdir in workdirs:
    path = os.path.join(workdir, "results.json")
    try:
      with open(path) as f:
        results = json.load(f)
    except FileNotFoundError:
      raise SystemExit(f"{path}: no results.json; run compare.py there first") from None
    except json.JSONDecodeError as e:
      raise SystemExit(f"{path}: not valid JSON ({e})") from None
    for model, r in results.items():
      if not isinstance(r, dict) or "test_top1" not in r:
        raise SystemExit(f"{path}: entry {model!r} is not a compare.py model result")
      key = (model, r.get("seed"))
      if key in seen:
        raise SystemExit(f"{path}: {model} seed {r.get('seed')} is also in {seen[key]}; "
                         "give each run once")
      seen[key] = path
      runs.setdefault(model, []).append(r)
  return runs


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
  out = {}
  for model, rs in runs.items():
    entry = {"seeds": [r.get("seed") for r in rs], "steps": rs[0].get("steps")}
    for field in FIELDS:
      values = [r[field] for r in rs if r.get(field) is not None]
      if values:
        entry[field] = {"values": values, "mean": float(np.mean(values)),
                        "std": float(np.std(values)), "min": float(np.min(values)),
                        "max": float(np.max(values))}
    out[model] = entry
  return out


def table(summary: dict[str, dict]) -> str:
  lines = ["| model | seeds | sync-pair top-1 | test top-1 | train time (s) | parameters |",
           "|---|---|---|---|---|---|"]
  for model, e in summary.items():
    def cell(field, fmt):
      if field not in e:
        return "n/a"
      v = e[field]
      return (f"{v['mean']:{fmt}} ± {v['std']:{fmt}} ({v['min']:{fmt}}-{v['max']:{fmt}})"
              if len(v["values"]) > 1 else f"{v['mean']:{fmt}}")
    params = f"{int(e['params']['mean']):,}" if "params" in e else "n/a"
    lines.append(f"| {model} | {len(e['seeds'])} | {cell('test_pair_top1', '.3f')} | "
                 f"{cell('test_top1', '.3f')} | {cell('train_seconds', '.0f')} | {params} |")
  return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[dict]], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(9.5, 4.8))
  colours = plt.get_cmap("tab20").colors
  for i, (model, rs) in enumerate(runs.items()):
    curves = [{h["step"]: h["pair_top1"] for h in r.get("eval_history") or []
               if "pair_top1" in h} for r in rs]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    if not steps:
      continue
    values = np.array([[c[s] for s in steps] for c in curves])
    # Solid: RSTG and its variants; dashed: the baselines.
    line, = ax.plot(steps, values.mean(0), marker="o", ms=3,
                    color=colours[(2 * i) % 20 + (2 * i) // 20 % 2],
                    ls="-" if model.startswith("rstg") else "--",
                    label=f"{model} ({values[:, -1].mean():.2f}, {len(rs)} "
                    f"seed{'s' if len(rs) > 1 else ''})")
    ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.12)
  ax.axhline(1 / 3, color="grey", ls="--", lw=0.8, label="motion ignored (1/3)")
  ax.set_ylim(0, 1)
  ax.set_xlabel("training step")
  ax.set_ylabel("synchronous-pair accuracy (test)")
  ax.grid(alpha=0.3)
  # Outside the axes: with many models a legend inside hides curves.
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  if not _WORKDIRS.value or not _OUT.value:
    raise SystemExit("give --workdirs=A,B,... and --out=DIR")
  runs = load(_WORKDIRS.value)
  if _MODELS.value:
    missing = [m for m in _MODELS.value if m not in runs]
    if missing:
      raise SystemExit(f"--models: {missing} in none of the workdirs (found {sorted(runs)})")
    runs = {m: runs[m] for m in _MODELS.value}
  summary = summarise(runs)
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "seeds.json"), "w") as f:
    json.dump(summary, f, indent=1)
  text = table(summary)
  with open(os.path.join(_OUT.value, "seeds.md"), "w") as f:
    f.write(text)
  plot(runs, os.path.join(_OUT.value, "seeds.png"))
  print(text)


if __name__ == "__main__":
  app.run(main)
