"""Predict the classes of videos on disk, or stream one video frame by frame.

  python -m rstg_jax.predict --config=configs/smt_c2d_rstg_final.py \
      --checkpoint=runs/c2d --input=videos/ --views=3x2 --out=predictions.json
  python -m rstg_jax.predict --config=configs/syncmnist_rstg_causal.py:tiny \
      --checkpoint=runs/causal --input=clip.npy --stream

--checkpoint: a workdir (its latest checkpoint), a step folder, or an imported
original checkpoint (`rstg_jax.tools.import_checkpoint`); it must match --config
(`--config.x=y` overrides as in `rstg_jax.main`). --input: a video file (webm/mp4
through ffmpeg), a folder of JPEG frames (v1 layout), or a folder of several; a
`.npy` clip for SyncMNIST configs. Frames are sampled and cropped as the config's
evaluation does (`rstg_jax.data.predict_input`), --views as its multi-view
protocol. Prints the top-5 classes of each video; --out writes them (and the
view-averaged logits) as JSON. Unreadable inputs of a folder are skipped and listed.

--stream feeds the sampled frames of one input one at a time through the backbone
and the graph's scan carry (`rstg_jax.streaming`), printing the prediction and the
latency after every frame; models whose graph normalises the whole clip at once
(the paper's) cannot stream and are refused with the reason.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from absl import app
from absl import flags
from ml_collections import config_flags

def _define_flags() -> None:
  """The CLI's flags, defined only when run as a program: importing this module
  (tests, other tools) must not clash with `rstg_jax.main`'s --config."""
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file, e.g. configs/smt_c2d_rstg_final.py.",
      lock_config=True)
  flags.DEFINE_string(
      "checkpoint", None, "A workdir (latest checkpoint), a step folder, or an imported "
      "checkpoint.")
  flags.DEFINE_string(
      "input", None, "A video file, a folder of frames, or a folder of videos "
      "(SyncMNIST: a .npy clip or a folder of them).")
  flags.DEFINE_enum("views", "1x1", ["1x1", "3x2", "11x2"],
                    "Views averaged per video, as the evaluation's protocol.")
  flags.DEFINE_string("out", None, "Write the predictions as JSON here.")
  flags.DEFINE_bool("stream", False, "Feed one video frame by frame (causal "
                    "models: graph.norm_scope='per_frame').")
  flags.DEFINE_integer("batch_size", 8, "Clips per forward pass.")
  flags.DEFINE_integer("top", 5, "Classes printed per video.")
  flags.DEFINE_string(
      "class_names", None, "Labels file (v1 CSV / v2 JSON) naming the classes; "
      "default: the checkpoint's or the data set's names.")
  flags.mark_flags_as_required(["config", "checkpoint", "input"])


def _print_top(path: str, num_frames: int, views: str, top: list[dict[str, Any]]) -> None:
  print(f"{path} ({num_frames} frames, {views} views):")
  for t in top:
    print(f"  {t['rank']}. {t['probability']:.4f}  {t['name']}  (class {t['class']})")


def predict(config, checkpoint: str, input_path: str, *, views: str = "1x1",
            batch_size: int = 8, top: int = 5, labels_file: str | None = None,
            log=print) -> dict[str, Any]:
  """Predicts every input; returns the JSON document (see the module docstring).

  An input that cannot be read is skipped and listed under 'skipped' when the
  input is a folder; a single bad input raises predict_input.BadInput.
  """
  from rstg_jax import inference  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import predict_input  # pylint: disable=g-import-not-at-top
  paths = predict_input.list_inputs(input_path, config.task)
  single = len(paths) == 1 and os.path.abspath(input_path) == paths[0]
  loaded, names, names_from, predictor = None, None, None, None
  videos: list[dict[str, Any]] = []
  skipped: list[dict[str, str]] = []
  pending: dict[str, Any] = {}
  t0 = time.time()

  def finish(results):
    for path, logits in results:
      clips = pending.pop(path)
      entry = {"input": path, "num_frames": clips.num_frames, "views": views,
               "notes": clips.notes, "top": inference.topk(logits, names, top),
               "logits": [float(x) for x in logits]}
      videos.append(entry)
      _print_top(path, clips.num_frames, views, entry["top"])

  for i, path in enumerate(paths):
    if len(paths) > 1:
      log(f"[{i + 1}/{len(paths)}] {path}  ({time.time() - t0:.1f} s)")
    try:
      clips = predict_input.read_input(path, config, views)
    except predict_input.BadInput as e:
      if single:
        raise
      log(f"SKIPPED {e}")
      skipped.append({"input": path, "error": str(e)})
      continue
    for note in clips.notes:
      log(f"NOTE {note}")
    if loaded is None:   # the first readable clip fixes the shapes the model checks
      loaded = inference.load_model(config, checkpoint, clips.clips[0])
      names, names_from = inference.class_names(config, loaded.meta, labels_file)
      predictor = inference.BatchPredictor(loaded, batch_size)
      log(f"model {config.model.name} from {loaded.checkpoint}; class names from "
          f"{names_from}")
      for d in inference.model_differences(config, loaded.meta):
        log(f"NOTE --config sets {d}")
    pending[path] = clips
    finish(predictor.add(path, clips.clips))
  if predictor is not None:
    finish(predictor.results())
  if skipped:
    log(f"{len(skipped)} of {len(paths)} inputs skipped:")
    for s in skipped:
      log(f"  {s['error']}")
  if not videos:
    raise predict_input.InputError(f"--input={input_path}: no input could be read "
                                   f"({len(skipped)} skipped)")
  return {"checkpoint": loaded.checkpoint, "config_model": config.model.name,
          "views": views, "class_names_from": names_from, "videos": videos,
          "skipped": skipped}


def stream(config, checkpoint: str, input_path: str, *, top: int = 5,
           labels_file: str | None = None, log=print) -> dict[str, Any]:
  """Streams the 1x1 evaluation clip of one input frame by frame (see the module
  docstring); returns per-frame predictions and latencies, and the whole-clip
  logits of the same frames for comparison."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rstg_jax import inference  # pylint: disable=g-import-not-at-top
  from rstg_jax import streaming  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import predict_input  # pylint: disable=g-import-not-at-top
  reason = streaming.reason_not_streamable(config)   # before anything loads
  if reason:
    raise streaming.NotStreamableError(f"--stream: {reason}")
  path, clips = predict_input.read_single(input_path, config, "--stream", log)
  clip = clips.clips[:1]                                     # [1, T, H, W, C]
  loaded = inference.load_model(config, checkpoint, clip[0])
  names, names_from = inference.class_names(config, loaded.meta, labels_file)
  for d in inference.model_differences(config, loaded.meta):
    log(f"NOTE --config sets {d}")
  streamer = streaming.Streamer(config, loaded.model, loaded.variables)
  # Compile on a throw-away stream, so the latencies below are per frame.
  t = time.perf_counter()
  warm = streamer.start(1)
  for f in range(streamer.frames_per_step):
    warm, logits = streamer.push(warm, clip[:, f])
  jax.block_until_ready(logits)   # else frame 1 would wait for this run
  log(f"model {config.model.name} from {loaded.checkpoint}; class names from "
      f"{names_from}; compiled the frame step in {time.perf_counter() - t:.1f} s")
  state, frames, last = streamer.start(1), [], None
  for f in range(clip.shape[1]):
    t = time.perf_counter()
    state, logits = streamer.push(state, clip[:, f])
    if logits is not None:
      last = np.asarray(jax.device_get(logits))[0]
    ms = (time.perf_counter() - t) * 1e3
    entry = {"frame": f + 1, "latency_ms": ms,
             "top": None if logits is None else inference.topk(last, names, top)}
    frames.append(entry)
    if entry["top"] is None:
      print(f"frame {f + 1:3d}/{clip.shape[1]}  {ms:8.2f} ms  (buffered: the backbone "
            f"pools {streamer.frames_per_step} frames per graph step)")
    else:
      best = entry["top"][0]
      print(f"frame {f + 1:3d}/{clip.shape[1]}  {ms:8.2f} ms  {best['probability']:.4f}  "
            f"{best['name']}  (class {best['class']})")
  whole = np.asarray(jax.device_get(jax.jit(
      lambda v, x: loaded.model.apply(v, x, train=False))(loaded.variables, clip)))[0]
  diff = float(np.max(np.abs(whole - last))) if last is not None else float("nan")
  print(f"whole clip ({clip.shape[1]} frames): {inference.topk(whole, names, 1)[0]['name']};"
        f" max |stream - whole| logit difference {diff:.2e}")
  return {"checkpoint": loaded.checkpoint, "config_model": config.model.name,
          "input": path, "num_frames": clips.num_frames, "frames": frames,
          "stream_logits": None if last is None else [float(x) for x in last],
          "whole_clip_logits": [float(x) for x in whole], "max_abs_difference": diff,
          "class_names_from": names_from}


def user_errors() -> tuple[type[Exception], ...]:
  """What ends in one line (no traceback): the user's input, not a bug."""
  from rstg_jax import inference  # pylint: disable=g-import-not-at-top
  from rstg_jax import streaming  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import predict_input  # pylint: disable=g-import-not-at-top
  return (inference.PredictError, predict_input.InputError, predict_input.BadInput,
          streaming.NotStreamableError)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from rstg_jax.data import predict_input  # pylint: disable=g-import-not-at-top
  predict_input.keep_tensorflow_off_accelerators()
  from rstg_jax import log_filters  # pylint: disable=g-import-not-at-top
  log_filters.quiet_library_logs()
  fl = flags.FLAGS
  config = fl.config

  def log(msg: str) -> None:   # progress and notes: stderr, results: stdout
    print(msg, file=sys.stderr, flush=True)

  try:
    if fl.stream:
      doc = stream(config, fl.checkpoint, fl.input, top=fl.top,
                   labels_file=fl.class_names, log=log)
    else:
      doc = predict(config, fl.checkpoint, fl.input, views=fl.views,
                    batch_size=fl.batch_size, top=fl.top,
                    labels_file=fl.class_names, log=log)
  except user_errors() as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1)
  if fl.out:
    out = os.path.abspath(os.path.expanduser(fl.out))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
      json.dump(doc, f, indent=1)
    log(f"wrote {out}")


def run() -> None:
  from rstg_jax import config_check  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=config_check.parse_flags)


if __name__ == "__main__":
  run()
