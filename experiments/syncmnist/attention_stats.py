"""Does a trained RSTG attend to the digits that move together? Measured over a test set.

  python experiments/syncmnist/attention_stats.py \
      --config=configs/syncmnist_rstg.py:cpu --checkpoint=runs/demo --out=runs/demo/attention

For every synchronous test video (the pair is digits 0 and 1 of the stored `coords`,
the third digit moves on its own) and every graph iteration k, frame t and receiver
node i, the attention the receiver gives to digit d is

  A_d = sum_j alpha_ij * overlap(node j's region, digit d's 28x28 box) / 784,

the attention-weighted share of the digit's box that the senders cover (the space
stage `sow`s alpha, as for `rstg_jax.tools.explain`; node regions as the graph's area
pooling, `graph_layout.region_boxes`, on the 100x100 canvas). Each scale's regions
tile the frame, so uniform attention gives every digit 3/14 (with 3 scales): only
attention that depends on the motion can favour the synchronous pair, whose digits
are placed and move like the third one otherwise. Reported per iteration, averaged
over receivers and frames:

  A_sync, A_odd  the pair's mean and the third digit's, averaged over videos
  sync / odd     A_sync / A_odd (1 when attention ignores synchrony)
  pair found     the fraction of videos in which the third digit gets the least
                 attention of the three, i.e. the synchronous pair the most of the
                 three pairs: what attention alone would answer (chance 1/3)

for the checkpoint and, as the control, the same model at initialisation (seed 0).
Writes `attention_stats.json`, `attention_stats.md` and `attention_stats.png`.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app
from absl import flags
import numpy as np

_NUM_VIDEOS_DEFAULT = 1000


def digit_shares(coords: np.ndarray, scales: tuple[int, ...]) -> np.ndarray:
  """Share of each digit's box inside each node region: [T, n, 2] -> [T, N, n].

  Boxes and regions on the generator's 100x100 canvas, where `coords` live.
  """
  from rstg_datasets.sync_mnist import generator  # pylint: disable=g-import-not-at-top
  from rstg_datasets.sync_mnist.digit_pool import DIGIT_SIZE  # pylint: disable=g-import-not-at-top
  from rstg_jax.models.graph import graph_layout  # pylint: disable=g-import-not-at-top
  boxes = graph_layout.region_boxes(scales, generator.CANVAS_SIZE)
  x0 = np.array([b.x0 for b in boxes])[None, :, None]
  x1 = np.array([b.x1 for b in boxes])[None, :, None]
  y0 = np.array([b.y0 for b in boxes])[None, :, None]
  y1 = np.array([b.y1 for b in boxes])[None, :, None]
  row = coords[:, None, :, 0].astype(np.float64)
  col = coords[:, None, :, 1].astype(np.float64)
  dx = np.clip(np.minimum(x1, col + DIGIT_SIZE) - np.maximum(x0, col), 0, None)
  dy = np.clip(np.minimum(y1, row + DIGIT_SIZE) - np.maximum(y0, row), 0, None)
  return dx * dy / float(DIGIT_SIZE * DIGIT_SIZE)


def digit_attention(attention: np.ndarray, shares: np.ndarray) -> np.ndarray:
  """Attention given to each digit: alpha [K, T, N, N] (receiver, sender), shares
  [T, N, n] -> [K, n], averaged over receivers and frames."""
  per_receiver = np.einsum("ktij,tjd->ktid", attention, shares)
  return per_receiver.mean(axis=(1, 2))


def measure(model: Any, variables: dict[str, Any], videos: np.ndarray,
            coords: np.ndarray, batch_size: int) -> np.ndarray:
  """A_d [V, K, n] for videos [V, T, H, W, C] with coords [V, T, n, 2]."""
  import jax  # pylint: disable=g-import-not-at-top
  from rstg_jax.tools import explain  # pylint: disable=g-import-not-at-top
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))
  out = []
  for start in range(0, len(videos), batch_size):
    batch = videos[start:start + batch_size]
    _, state = apply(variables, batch)
    graphs = explain.graph_intermediates(jax.device_get(state["intermediates"]))
    attention = graphs[sorted(graphs)[0]]["attention"].astype(np.float64)  # [K, B, T, N, N]
    if attention.shape[2] != videos.shape[1]:
      raise ValueError(f"the graph has {attention.shape[2]} time steps for "
                       f"{videos.shape[1]} frames: this measure needs one per frame")
    scales = explain.scales_of(attention.shape[-1])
    for b in range(len(batch)):
      out.append(digit_attention(attention[:, b], digit_shares(coords[start + b], scales)))
  return np.stack(out)


def summarise(a: np.ndarray) -> list[dict[str, float]]:
  """Per iteration k of a [V, K, 3] (the pair first): mean A_sync and A_odd, their
  ratio, and the fraction of videos where the third digit gets the least attention."""
  sync, odd = a[:, :, :2].mean(axis=2), a[:, :, 2]
  found = odd < a[:, :, :2].min(axis=2)                     # [V, K]
  return [{"iteration": k + 1, "sync": float(sync[:, k].mean()), "odd": float(odd[:, k].mean()),
           "ratio": float(sync[:, k].mean() / odd[:, k].mean()),
           "pair_found": float(found[:, k].mean())}
          for k in range(a.shape[1])]


def load_test(config, count: int) -> dict[str, np.ndarray]:
  """The first `count` test videos of the config's build, synchronous ones only."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import rstg_datasets.sync_mnist  # pylint: disable=g-import-not-at-top,unused-import
  d = config.data
  ds = tfds.load(f"{d.name}/{d.config}", split=f"{d.eval_split}[:{count}]",
                 data_dir=d.data_dir, download=False)
  keep = {"video": [], "coords": []}
  for ex in tfds.as_numpy(ds):
    if ex["is_sync"]:
      for key in keep:
        keep[key].append(ex[key])
  return {k: np.stack(v) for k, v in keep.items()}


def write(out_dir: str, rows: dict[str, list[dict[str, float]]], info: dict[str, Any]) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "attention_stats.json"), "w") as f:
    json.dump({"info": info, **rows}, f, indent=1)
  lines = [f"Attention per digit, {info['videos']} synchronous test videos of "
           f"`{info['data']}`, checkpoint `{info['checkpoint']}`; uniform attention gives "
           f"every digit {info['uniform']:.4f}.", "",
           "| model | iteration | A_sync | A_odd | sync / odd | pair found (chance 1/3) |",
           "|---|---|---|---|---|---|"]
  for name, per_k in rows.items():
    for r in per_k:
      lines.append(f"| {name} | {r['iteration']} | {r['sync']:.4f} | {r['odd']:.4f} | "
                   f"{r['ratio']:.3f} | {r['pair_found']:.3f} |")
  with open(os.path.join(out_dir, "attention_stats.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
  width = 0.2
  iters = np.arange(len(next(iter(rows.values()))))
  for m, (name, per_k) in enumerate(rows.items()):
    for d, (key, hatch) in enumerate((("sync", ""), ("odd", "//"))):
      offset = (2 * m + d - 1.5) * width
      ax.bar(iters + offset, [r[key] for r in per_k], width, hatch=hatch,
             color=f"C{m}", alpha=1.0 if key == "sync" else 0.55, edgecolor="k", lw=0.5,
             label=f"{name}: {'synchronous pair' if key == 'sync' else 'third digit'}")
  ax.axhline(info["uniform"], color="0.4", ls=":", lw=1, label="uniform attention")
  ax.set_xticks(iters, [f"iteration {k + 1}" for k in iters])
  ax.set_ylabel("attention per digit (A_d)")
  ax.set_title(f"Attention to the synchronous pair vs the third digit "
               f"({info['videos']} test videos)", fontsize=10)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "attention_stats.png"))
  plt.close(fig)


def main(argv) -> None:
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments: {argv[1:]}")
  import jax  # pylint: disable=g-import-not-at-top
  from rstg_jax import inference  # pylint: disable=g-import-not-at-top
  config = flags.FLAGS.config
  if config.model.name != "syncmnist" or config.model.head != "rstg":
    sys.exit(f"ERROR: --config must be a SyncMNIST RSTG config (model {config.model.name!r}, "
             f"head {config.model.get('head')!r})")
  f = flags.FLAGS
  data = load_test(config, f.num_videos)
  try:
    loaded = inference.load_model(config, f.checkpoint, data["video"][0])
  except inference.PredictError as e:
    sys.exit(f"ERROR: {e}")
  init = loaded.model.init(jax.random.PRNGKey(0), data["video"][:1], train=False)
  rows = {}
  for name, variables in (("trained", loaded.variables), ("at initialisation", init)):
    a = measure(loaded.model, variables, data["video"], data["coords"], f.batch_size)
    rows[name] = summarise(a)
    for r in rows[name]:
      print(f"{name:>18} iteration {r['iteration']}: A_sync {r['sync']:.4f}  A_odd "
            f"{r['odd']:.4f}  sync/odd {r['ratio']:.3f}  pair found in "
            f"{100 * r['pair_found']:.1f}% of videos (chance 33.3%)")
  scales = loaded.model.graph.scales  # head 'rstg' (checked above) always has a graph
  info = {"checkpoint": loaded.checkpoint, "data": f"{config.data.name}/{config.data.config}",
          "videos": int(len(data["video"])), "uniform": len(scales) / sum(s * s for s in scales)}
  write(f.out, rows, info)
  print(f"wrote {f.out}/attention_stats.{{json,md,png}}")


def _define_flags() -> None:
  """Defined only when run as a script, so that tests can import the functions."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "Config file of the model, e.g. configs/syncmnist_rstg.py:cpu.",
      lock_config=True)
  flags.DEFINE_string("checkpoint", None, "A workdir, its checkpoints/ folder or a step folder.")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_integer("num_videos", _NUM_VIDEOS_DEFAULT, "Test videos read (the "
                       "synchronous ones among them are measured).")
  flags.DEFINE_integer("batch_size", 50, "Videos per forward pass.")
  flags.mark_flags_as_required(["config", "checkpoint", "out"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
