"""What the graph looked at in one video: node regions, attention, node norms, top-5.

  python -m rstg_jax.tools.explain --config=configs/syncmnist_rstg.py:tiny \
      --checkpoint=runs/demo --input=clip.npy --out=runs/demo/explain

`--checkpoint` is a workdir (its latest checkpoint), its `checkpoints/` folder or
one step folder (`runs/demo/checkpoints/250`), as `config.init_from` accepts.
`--input` is one input as `rstg_jax.predict` reads it (`rstg_jax.data.predict_input`):
for SyncMNIST a clip saved with `np.save` ([T, H, W] or [T, H, W, 1], 0-255, e.g. a
SyncMNIST video) or a folder of frame images (natural order of the names, made grey
and resized to 64x64, at most the data set's 10 frames, sampled evenly); for
Something-Something a video file or a folder of JPEG frames, sampled and
centre-cropped as the evaluation's 1x1 view. The frames drawn are that clip, the
pixels the model saw. The checkpoint is loaded, checked against `--config`, and the
classes named as by `rstg_jax.predict` (`rstg_jax.inference`).

Written into `--out`:
  explain.png    rows = graph iterations k, columns = frames: the frame with the
                 node regions (3x3, 2x2 grid lines, the whole frame), each node
                 coloured by the norm of its output at that iteration, and an
                 arrow sender j -> receiver i whose width and colour grow with
                 the attention weight alpha_ij (weights below --min_weight,
                 default 1/N, and self-attention are not drawn)
  attention.png  per iteration: the attention matrix [receiver, sender]
                 averaged over frames, and the node output norms [node, frame]
  explain.gif    the same panels as explain.png, one frame of the video at a time
  index.html     the GIF, the two images and the top-5 classes side by side
  top5.json      the top-5 as `rstg_jax.predict` lists them (rank, class, name,
                 probability)
  explain.npz    the arrays drawn: attention [K, T, N, N], node_norm [K, T, N],
                 logits [C], frame_index [T] (input frame shown for graph time t)

The attention is the one the model computed: the space stage `sow`s its softmax
weights into the 'intermediates' collection (and the graph each iteration's node
states), which `apply(..., mutable=['intermediates'])` returns; nothing is
recomputed here. Under the original's adjacency semantics
(`graph.adjacency='reference'`) the softmax runs over all N senders, the receiver
itself and non-neighbours included (their logit is 0): those weights are real and
appear in the matrix; the arrows skip self-attention.
"""
from __future__ import annotations

import html
import json
import os
from typing import Any, Sequence

import numpy as np

# Figure geometry (inches, dots per inch): the image sizes follow from these.
PANEL_W, PANEL_H = 2.4, 2.75  # one frame panel (the whole-frame node sits above it)
TITLE_H = 0.6                 # figure title band
CBAR_W = 1.2                  # colour bar column (node norm, attention weight)
DPI = 80
MAX_LINE_WIDTH = 4.0          # points, for the largest attention weight drawn
EDGE_CMAP = "plasma"


# ---------------------------------------------------------------------------
# The model's own intermediates
# ---------------------------------------------------------------------------

def graph_intermediates(intermediates: Any) -> dict[str, dict[str, np.ndarray]]:
  """{graph path: {'attention': [K, B, T, N, N], 'node_out': [K, B, T, N, D]}}.

  Finds every RSTG cell in the 'intermediates' tree (a model may hold several
  graphs, e.g. at res3 and res4); K is the number of iterations (one sown entry
  per space stage).
  """
  found: dict[str, dict[str, np.ndarray]] = {}

  def walk(tree, path):
    if not isinstance(tree, dict):
      return
    if "node_out" in tree and "attention" in tree.get("space", {}):
      found["/".join(path[:-1]) or "graph"] = {
          "attention": np.stack([np.asarray(a) for a in tree["space"]["attention"]]),
          "node_out": np.stack([np.asarray(a) for a in tree["node_out"]])}
    for k, v in tree.items():
      walk(v, path + [str(k)])

  walk(dict(intermediates), [])
  return found


def run_model(model: Any, variables: dict[str, Any], video: np.ndarray,
              graph: str | None = None) -> dict[str, Any]:
  """Runs the classifier on one clip [T, H, W, C] in inference mode.

  Returns {'logits' [C], 'graph' name, 'graphs' (all names), 'attention'
  [K, T_g, N, N] (receiver i, sender j), 'node_norm' [K, T_g, N]}.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from rstg_jax.inference import PredictError  # pylint: disable=g-import-not-at-top
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))
  logits, state = apply(variables, video[None])
  graphs = graph_intermediates(jax.device_get(state.get("intermediates", {})))
  if not graphs:
    raise PredictError("the model sowed no graph attention: is it an RSTG model "
                     "(not a baseline or backbone-only config)?")
  name = graph if graph is not None else sorted(graphs)[0]
  if name not in graphs:
    raise PredictError(f"--graph={graph!r}: the model's graphs are {sorted(graphs)}")
  g = graphs[name]
  return {"logits": np.asarray(logits[0], np.float64), "graph": name,
          "graphs": sorted(graphs), "attention": g["attention"][:, 0].astype(np.float64),
          "node_norm": np.linalg.norm(g["node_out"][:, 0].astype(np.float64), axis=-1)}


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------

def scales_of(num_nodes: int) -> tuple[int, ...]:
  """Grid sides in node order from the node count (14 -> (3, 2, 1))."""
  total, s = 0, 0
  while total < num_nodes:
    s += 1
    total += s * s
  if total != num_nodes:
    raise ValueError(f"{num_nodes} nodes is no multi-scale grid 1x1 + 2x2 + ...")
  return tuple(range(s, 0, -1))


def node_layout(num_nodes: int) -> tuple[np.ndarray, list[str], np.ndarray]:
  """(positions [N, 2] in frame fractions (x, y down), names, scale side per node).

  Nodes sit at the centres of the cells they pool (spec §3.1: area pooling of
  the whole map, so cell (r, c) of scale s covers the frame's [c/s, (c+1)/s] x
  [r/s, (r+1)/s]); the whole-frame node would share the centre with the middle
  3x3 cell, so it is drawn just above the frame.
  """
  pos, names, side = [], [], []
  for s in scales_of(num_nodes):
    for r in range(s):
      for c in range(s):
        if s == 1:
          pos.append((0.5, -0.13))
          names.append("whole")
        else:
          pos.append(((c + 0.5) / s, (r + 0.5) / s))
          names.append(f"{s}x{s} r{r}c{c}")
        side.append(s)
  return np.asarray(pos), names, np.asarray(side)


def input_frame_index(num_graph_frames: int, num_input_frames: int) -> np.ndarray:
  """The input frame shown for each graph time step (backbones may pool time)."""
  t = (np.arange(num_graph_frames) + 0.5) * num_input_frames / num_graph_frames
  return np.minimum(num_input_frames - 1, np.floor(t).astype(int))


def figure_size_px(rows: int, cols: int) -> tuple[int, int]:
  """(width, height) in pixels of a grid of frame panels with title and colour bar."""
  return (int(round((cols * PANEL_W + CBAR_W) * DPI)),
          int(round((rows * PANEL_H + TITLE_H) * DPI)))


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _panel_grid(rows: int, cols: int):
  """A figure of exactly figure_size_px(rows, cols) with rows x cols panel axes."""
  plt = _pyplot()
  w_in, h_in = cols * PANEL_W + CBAR_W, rows * PANEL_H + TITLE_H
  fig = plt.figure(figsize=(w_in, h_in), dpi=DPI)
  axes = np.empty((rows, cols), dtype=object)
  for r in range(rows):
    for c in range(cols):
      axes[r, c] = fig.add_axes([
          (c * PANEL_W + 0.06) / w_in, (h_in - TITLE_H - (r + 1) * PANEL_H + 0.06) / h_in,
          (PANEL_W - 0.12) / w_in, (PANEL_H - 0.30) / h_in])
  bar_h = rows * PANEL_H * 0.36
  caxes = [fig.add_axes([(cols * PANEL_W + 0.15) / w_in, (y0 + rows * PANEL_H * 0.08) / h_in,
                         0.14 / w_in, bar_h / h_in])
           for y0 in (rows * PANEL_H * 0.5, 0.0)]
  return fig, axes, caxes


def draw_panel(ax, frame: np.ndarray, attention: np.ndarray, norms: np.ndarray,
               norm_range: tuple[float, float], weight_range: tuple[float, float],
               title: str) -> None:
  """One frame with the node regions, attention arrows and nodes coloured by norm.

  Arrows are drawn for weights in `weight_range` = (min_weight, largest weight
  of the figure); their width and colour grow linearly with the weight.
  """
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  from matplotlib import patches  # pylint: disable=g-import-not-at-top
  from rstg_datasets.sync_mnist import preview  # pylint: disable=g-import-not-at-top
  n = len(norms)
  pos, _, side = node_layout(n)
  h, w = frame.shape[:2]
  ax.imshow(preview.displayable(frame), cmap="gray", vmin=0, vmax=255, extent=(0, 1, 1, 0),
            interpolation="nearest")
  # Region grids: 3x3 solid cyan, 2x2 dashed yellow, the whole frame its border.
  styles = {3: dict(color="#00e5ff", ls="-", lw=0.6), 2: dict(color="#ffd400", ls="--", lw=0.9)}
  for s in sorted(set(side.tolist())):
    st = styles.get(s, dict(color="#ff6ec7", ls=":", lw=0.8))
    for k in range(1, s):
      ax.plot([k / s, k / s], [0, 1], **st)
      ax.plot([0, 1], [k / s, k / s], **st)
  ax.add_patch(patches.Rectangle((0, 0), 1, 1, fill=False, ec="white", lw=1.0))
  # Attention arrows: sender j -> receiver i, width ~ alpha_ij (self skipped),
  # weakest first so the strong ones stay on top.
  lo, hi = weight_range
  cmap = colormaps[EDGE_CMAP]
  pairs = [(float(attention[i, j]), i, j) for i in range(n) for j in range(n)
           if i != j and attention[i, j] >= lo]
  for a, i, j in sorted(pairs):
    u = (a - lo) / (hi - lo) if hi > lo else 1.0
    ax.add_patch(patches.FancyArrowPatch(
        tuple(pos[j]), tuple(pos[i]), connectionstyle="arc3,rad=0.18",
        arrowstyle="-|>", mutation_scale=5 + 5 * u, lw=0.3 + (MAX_LINE_WIDTH - 0.3) * u,
        color=cmap(0.15 + 0.85 * u), alpha=0.5 + 0.5 * u, shrinkA=3, shrinkB=3, zorder=3))
  sizes = np.where(side == 1, 60, np.where(side == 2, 34, 22))
  ax.scatter(pos[:, 0], pos[:, 1], c=norms, cmap="viridis", vmin=norm_range[0],
             vmax=norm_range[1], s=sizes, edgecolors="white", linewidths=0.6, zorder=4)
  ax.set_xlim(-0.02, 1.02)
  ax.set_ylim(1.02, -0.24)
  ax.set_aspect(h / w * 1.0 if h and w else 1.0)
  ax.set_xticks([])
  ax.set_yticks([])
  for spine in ax.spines.values():
    spine.set_visible(False)
  ax.set_title(title, fontsize=8, pad=2)


def save_figure(fig, path: str, colors: int = 256) -> tuple[int, int]:
  """Saves `fig` at its own size as a palette PNG (a third of the RGB file's size)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  fig.canvas.draw()
  image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
  image.quantize(colors=colors, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
  _pyplot().close(fig)
  return image.size


def _norm_range(node_norm: np.ndarray) -> tuple[float, float]:
  lo, hi = float(node_norm.min()), float(node_norm.max())
  return (lo, hi if hi > lo else lo + 1e-6)


def _weight_range(attention: np.ndarray, min_weight: float) -> tuple[float, float]:
  off = attention[..., ~np.eye(attention.shape[-1], dtype=bool)]
  return (min_weight, max(float(off.max()), min_weight))


def _colorbars(fig, caxes, norm_range, weight_range):
  from matplotlib import cm, colormaps, colors  # pylint: disable=g-import-not-at-top
  lo, hi = weight_range
  edge = colors.LinearSegmentedColormap.from_list(
      "edges", [colormaps[EDGE_CMAP](0.15 + 0.85 * u) for u in np.linspace(0, 1, 64)])
  for cax, rng, cmap, label in ((caxes[0], norm_range, "viridis", "node output norm"),
                                (caxes[1], (lo, hi if hi > lo else lo + 1e-6), edge,
                                 "attention (arrow)")):
    bar = fig.colorbar(cm.ScalarMappable(norm=colors.Normalize(*rng), cmap=cmap), cax=cax)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def plot_explain_png(path: str, video: np.ndarray, result: dict[str, Any],
                     frames: Sequence[int], min_weight: float, title: str) -> None:
  """Rows = iterations, columns = the graph frames `frames` (see module docstring)."""
  att, norm = result["attention"], result["node_norm"]
  k_iters = att.shape[0]
  shown = input_frame_index(att.shape[1], len(video))
  fig, axes, caxes = _panel_grid(k_iters, len(frames))
  rng, wrng = _norm_range(norm), _weight_range(att, min_weight)
  for k in range(k_iters):
    for c, t in enumerate(frames):
      where = f"frame {t}" if len(video) == att.shape[1] else f"t={t} (frame {shown[t]})"
      draw_panel(axes[k, c], video[shown[t]], att[k, t], norm[k, t], rng, wrng,
                 f"iteration {k + 1}, {where}")
  _colorbars(fig, caxes, rng, wrng)
  fig.suptitle(title, fontsize=9, y=1 - 0.08 / (k_iters * PANEL_H + TITLE_H), va="top")
  save_figure(fig, path)


def write_gif(path: str, video: np.ndarray, result: dict[str, Any], min_weight: float,
              title: str, ms_per_frame: int = 600) -> tuple[int, int]:
  """One GIF frame per graph time step: the K iteration panels side by side."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  plt = _pyplot()
  att, norm = result["attention"], result["node_norm"]
  k_iters, t_graph = att.shape[:2]
  shown = input_frame_index(t_graph, len(video))
  rng, wrng = _norm_range(norm), _weight_range(att, min_weight)
  images = []
  for t in range(t_graph):
    fig, axes, caxes = _panel_grid(1, k_iters)
    for k in range(k_iters):
      draw_panel(axes[0, k], video[shown[t]], att[k, t], norm[k, t], rng, wrng,
                 f"iteration {k + 1}")
    _colorbars(fig, caxes, rng, wrng)
    where = (f"frame {t + 1}/{t_graph}" if len(video) == t_graph else
             f"graph step {t + 1}/{t_graph} (input frame {shown[t] + 1}/{len(video)})")
    fig.suptitle(f"{where}; {title}", fontsize=8,
                 y=1 - 0.04 / (PANEL_H + TITLE_H), va="top")
    fig.canvas.draw()
    images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]))
    plt.close(fig)
  images = [im.quantize(colors=256, method=Image.Quantize.FASTOCTREE) for im in images]
  images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame,
                 loop=0, optimize=True)
  return images[0].size


def plot_attention_png(path: str, result: dict[str, Any], title: str) -> None:
  """Per iteration: mean attention [receiver, sender] over frames; node norms over time."""
  plt = _pyplot()
  att, norm = result["attention"], result["node_norm"]
  k_iters, t_graph, n = att.shape[:3]
  _, names, _ = node_layout(n)
  fig, axes = plt.subplots(2, k_iters, figsize=(3.6 * k_iters + 1.4, 7.8), dpi=DPI,
                           squeeze=False, layout="constrained")
  mean_att = att.mean(axis=1)
  vmax = float(mean_att.max())
  for k in range(k_iters):
    ax = axes[0, k]
    im = ax.imshow(mean_att[k], cmap="magma", vmin=0, vmax=vmax)
    ax.set_title(f"iteration {k + 1}: attention (mean over frames)", fontsize=8)
    ax.set_xticks(range(n))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_yticks(range(n))
    ax.set_yticklabels(names if k == 0 else [], fontsize=6)
    ax.set_xlabel("sender j", fontsize=8)
    if k == 0:
      ax.set_ylabel("receiver i", fontsize=8)
    ax2 = axes[1, k]
    im2 = ax2.imshow(norm[k].T, cmap="viridis", vmin=norm.min(), vmax=norm.max(),
                     aspect="auto", interpolation="nearest")
    ax2.set_title(f"iteration {k + 1}: node output norm", fontsize=8)
    ax2.set_yticks(range(n))
    ax2.set_yticklabels(names if k == 0 else [], fontsize=6)
    ax2.set_xticks(range(t_graph))
    ax2.set_xticklabels([str(t) for t in range(t_graph)], fontsize=6)
    ax2.set_xlabel("frame t", fontsize=8)
  fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.01).set_label(
      "attention weight", fontsize=8)
  fig.colorbar(im2, ax=list(axes[1]), fraction=0.03, pad=0.01).set_label(
      "node output norm", fontsize=8)
  fig.suptitle(title, fontsize=9)
  save_figure(fig, path)


def write_html(path: str, *, top5: list[dict[str, Any]], info: dict[str, str],
               min_weight: float) -> None:
  """A page with the animation, the top-5 and the two images side by side."""
  rows = "".join(
      f"<tr><td>{t['rank']}</td><td>{html.escape(t['name'])}</td>"
      f"<td>{t['probability']:.3f}</td><td><div class='bar' "
      f"style='width:{max(1, round(160 * t['probability']))}px'></div></td></tr>"
      for t in top5)
  meta = "".join(f"<div><b>{html.escape(k)}</b>: {html.escape(v)}</div>"
                 for k, v in info.items())
  page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>RSTG explain</title>
<style>
body {{ font-family: sans-serif; margin: 16px; font-size: 14px; }}
.row {{ display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 3px 8px; text-align: left; }}
tr:nth-child(even) {{ background: #f2f2f2; }}
.bar {{ height: 10px; background: #ff7f0e; }}
img {{ max-width: 100%; }} .meta div {{ margin: 2px 0; }}
</style></head><body>
<h2>What the graph attended to</h2>
<div class="meta">{meta}</div>
<div class="row">
 <div><h3>Frames, attention and node norms</h3><img src="explain.gif" alt="animation"></div>
 <div><h3>Top-5</h3><table><tr><th>#</th><th>class</th><th>p</th><th></th></tr>{rows}</table>
  <p style="max-width: 360px">Arrows: sender &rarr; receiver for attention weights of at least {min_weight:.3f}
  (default 1/N: a uniform share); wider and brighter = larger weight. Self-attention is not
  drawn (see the matrices).<br>
  Node colour: norm of the node's output at that iteration.<br>
  Grids: 3&times;3 (solid), 2&times;2 (dashed); the whole-frame node sits above the frame.</p></div>
</div>
<h3>Attention matrices and node norms</h3><img src="attention.png" alt="attention">
<h3>All frames and iterations</h3><img src="explain.png" alt="explain">
</body></html>
"""
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)


def explain(model: Any, variables: dict[str, Any], video: np.ndarray, out_dir: str, *,
            names: Sequence[str], graph: str | None = None, max_frames: int = 10,
            min_weight: float | None = None, info: dict[str, str] | None = None
            ) -> dict[str, Any]:
  """Runs the model on `video` [T, H, W, C] and writes the files into `out_dir`.

  Returns the run_model result plus 'top5' (`inference.topk` entries), 'files' and
  'min_weight'.
  """
  from rstg_jax import inference  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  result = run_model(model, variables, video, graph)
  k_iters, t_graph, n = result["attention"].shape[:3]
  if min_weight is None:
    min_weight = 1.0 / n  # above a uniform share
  frames = np.unique(np.linspace(0, t_graph - 1, min(max_frames, t_graph)).round().astype(int))
  top5 = inference.topk(result["logits"], names, 5)
  head = (f"top-1 {top5[0]['name']} (p={top5[0]['probability']:.2f}); arrows sender->receiver for "
          f"attention >= {min_weight:.3f}, wider = more")
  files = {name: os.path.join(out_dir, name) for name in
           ("explain.png", "attention.png", "explain.gif", "index.html", "explain.npz")}
  plot_explain_png(files["explain.png"], video, result, frames.tolist(), min_weight, head)
  plot_attention_png(files["attention.png"], result,
                     f"graph '{result['graph']}': {k_iters} iterations, {t_graph} frames, "
                     f"{n} nodes")
  write_gif(files["explain.gif"], video, result, min_weight, head)
  info = dict(info or {})
  info.update({"graph": result["graph"] + (f" (of {', '.join(result['graphs'])})"
                                           if len(result["graphs"]) > 1 else ""),
               "iterations x frames x nodes": f"{k_iters} x {t_graph} x {n}"})
  write_html(files["index.html"], top5=top5, info=info, min_weight=min_weight)
  np.savez_compressed(files["explain.npz"], attention=result["attention"],
                      node_norm=result["node_norm"], logits=result["logits"],
                      frame_index=input_frame_index(t_graph, len(video)))
  with open(os.path.join(out_dir, "top5.json"), "w") as f:
    json.dump(top5, f, indent=1)
  return {**result, "top5": top5, "files": files, "min_weight": min_weight}


def run(config: Any, checkpoint: str, input_path: str, out_dir: str, *,
        graph: str | None = None, max_frames: int = 10,
        min_weight: float | None = None, log=print) -> dict[str, Any]:
  """The command: reads the input and the checkpoint as `rstg_jax.predict` does,
  explains the clip the model sees (its 1x1 evaluation view)."""
  from rstg_jax import inference  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import predict_input  # pylint: disable=g-import-not-at-top
  path, clips = predict_input.read_single(input_path, config, "explain", log)
  video = clips.clips[0]                                    # [T, H, W, C] uint8
  loaded = inference.load_model(config, checkpoint, video)
  names, names_from = inference.class_names(config, loaded.meta)
  return explain(loaded.model, loaded.variables, video, out_dir, names=names,
                 graph=graph, max_frames=max_frames, min_weight=min_weight,
                 info={"input": path, "checkpoint": loaded.checkpoint,
                       "class names from": names_from,
                       "clip [T, H, W, C]": "x".join(map(str, video.shape))})


def user_errors() -> tuple[type[Exception], ...]:
  """What ends in one line (no traceback): the user's input, not a bug."""
  from rstg_jax import inference  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import predict_input  # pylint: disable=g-import-not-at-top
  return (inference.PredictError, predict_input.InputError, predict_input.BadInput)


def main(argv: Sequence[str]) -> None:
  import sys  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import predict_input  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments: {argv[1:]}")
  from rstg_jax import log_filters  # pylint: disable=g-import-not-at-top
  predict_input.keep_tensorflow_off_accelerators()
  log_filters.quiet_library_logs()
  f = flags.FLAGS
  try:
    out = run(f.config, f.checkpoint, f.input, f.out, graph=f.graph,
              max_frames=f.max_frames, min_weight=f.min_weight)
  except user_errors() as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1)
  print("top-5: " + ", ".join(f"{t['name']} {t['probability']:.3f}" for t in out["top5"]))
  print(f"wrote {', '.join(sorted(out['files'].values()))}")


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "Config file of the model, e.g. configs/syncmnist_rstg.py:tiny.",
      lock_config=True)
  flags.DEFINE_string("checkpoint", None, "A workdir, its checkpoints/ folder or a step folder.")
  flags.DEFINE_string("input", None, "One input as rstg_jax.predict reads it: SyncMNIST a "
                      ".npy clip [T, H, W(, 1)] or a folder of frame images; "
                      "Something-Something a video file or a folder of JPEG frames.")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_string("graph", None, "Which graph of the model (default: the first).")
  flags.DEFINE_integer("max_frames", 10, "Frames (columns) in explain.png.")
  flags.DEFINE_float("min_weight", None, "Smallest attention drawn (default 1/N).")
  flags.mark_flags_as_required(["config", "checkpoint", "input", "out"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from rstg_jax import config_check  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=config_check.parse_flags)
