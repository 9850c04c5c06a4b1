"""Something-Something input speed per CPU core against the train step it feeds.

Builds a v1-sized fake data set (JPEG frames 100 px high) into a temporary
folder, then, in one run:
  1. times the training input (`smt_input.TrainSliceInput`: random access,
     grain threads, decode of the sampled frames, crop, brightness) and the
     dense-evaluation input (`EvalInput`, views of the config's protocol) at
     the config's clip size, for each number of input threads;
  2. times the training step of the same config at the same clip size on
     this machine's default device (CPU here: slow, batch 1);
  3. prints how many input cores that step needs, and how many a GPU step at
     the paper's shape would need (its rate estimated from the step's XLA
     FLOPs, the card's dense peak and an MFU; `--gpu_*` flags).

  python experiments/bench_input.py                       # smt_i3d_rstg_final, 32x224
  python experiments/bench_input.py --config=smt_c2d --threads=1,2 --step_batch=2
  python experiments/bench_input.py --json                # one JSON line at the end
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

_CONFIG = flags.DEFINE_string("config", "smt_i3d_rstg_final", "configs/<name>.py")
_VIDEOS = flags.DEFINE_integer("videos", 24, "videos in the fake data set")
_FRAMES = flags.DEFINE_integer("frames", 45, "frames per video (v1 averages ~36)")
_HEIGHT = flags.DEFINE_integer("height", 100, "frame height (v1: 100)")
_WIDTH = flags.DEFINE_integer("width", 176, "frame width")
_CLIPS = flags.DEFINE_integer("clips", 48, "timed training clips per thread setting")
_EVAL_VIDEOS = flags.DEFINE_integer("eval_videos", 3, "timed dense-evaluation videos")
_THREADS = flags.DEFINE_list("threads", None, "input threads to time (default 1 and all cores)")
_STEP_BATCH = flags.DEFINE_integer("step_batch", 1, "batch of the timed train step")
_STEP_REPS = flags.DEFINE_integer("step_reps", 2, "timed train steps (0: skip)")
_GPU_PEAK = flags.DEFINE_float("gpu_peak_tflops", 989.0,
                               "dense bf16 peak of the GPU (H100 SXM: 989)")
_GPU_MFU = flags.DEFINE_float("gpu_mfu", 0.35, "assumed model FLOP utilisation on the GPU")
_JSON = flags.DEFINE_bool("json", False, "print the figures as one JSON line too")


def _cpu_name() -> str:
  """The processor's model name (Linux), so a carried result says where it was measured."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _time_input(make, clips: int) -> float:
  """Clips/s of an iterator over batches (after one warm-up batch)."""
  it = make()
  first = next(it)
  n, t0 = 0, time.perf_counter()
  while n < clips:
    n += len(next(it)["video"])
  del first
  return n / (time.perf_counter() - t0)


def _time_train_step(config, batch_size: int, reps: int) -> tuple[float, float]:
  """(clips/s, FLOPs per clip of forward + backward) of the config's train step."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rstg_jax.models.classifiers import smt_model  # pylint: disable=g-import-not-at-top
  from rstg_jax.tools import model_report  # pylint: disable=g-import-not-at-top
  d = config.data
  model = smt_model.build_model(config.model)
  rng = np.random.default_rng(0)
  batch = {"video": jnp.asarray(rng.integers(0, 256, (batch_size, d.num_frames,
                                                      d.image_size, d.image_size, 3),
                                             np.uint8)),
           "label": jnp.zeros((batch_size,), jnp.int32)}
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(batch["video"])
  state, step_fn, flops = model_report.train_step_and_flops(config, model, variables, batch)
  flops /= batch_size
  if reps <= 0:
    return float("nan"), flops
  _, _, step_s = model_report.time_steps(
      jax.jit(step_fn, donate_argnums=0), state, batch, reps)
  return batch_size / step_s, flops


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  logging.set_verbosity(logging.ERROR)
  from rstg_configs import common as configs_common  # pylint: disable=g-import-not-at-top
  from rstg_datasets.smt_common import fake_tree as ft  # pylint: disable=g-import-not-at-top
  from rstg_datasets.something_something_v1 import SomethingSomethingV1  # pylint: disable=g-import-not-at-top
  from rstg_jax.data import smt_input  # pylint: disable=g-import-not-at-top

  config = configs_common.get_config(_CONFIG.value)
  d = config.data
  cores = os.cpu_count() or 1
  threads = [int(t) for t in (_THREADS.value or sorted({1, cores}))]
  load = os.getloadavg()[0]
  names = ft.fake_class_names()
  out = {"config": _CONFIG.value, "clip": [d.num_frames, d.image_size, d.image_size],
         "cpu": _cpu_name(), "cores": cores, "load_1min": round(load, 2), "train_input": {},
         "eval_input": {}}
  print(f"{_CONFIG.value}: clip {d.num_frames}x{d.image_size}^2, eval views "
        f"{d.eval_views} (dense 11x2 timed too); {cores} cores, load {load:.2f}")
  with tempfile.TemporaryDirectory() as tmp:
    videos = [ft.FakeVideo(str(1000 + k), names[k % 174], _FRAMES.value, _HEIGHT.value,
                           _WIDTH.value) for k in range(_VIDEOS.value)]
    evals = [ft.FakeVideo(str(5000 + k), names[k % 174], _FRAMES.value, _HEIGHT.value,
                          _WIDTH.value) for k in range(_EVAL_VIDEOS.value)]
    ft.write_v1_tree(os.path.join(tmp, "manual"),
                     {"train": videos, "validation": evals,
                      "test": [ft.FakeVideo("2", None, 3)]})
    t0 = time.perf_counter()
    builder = ft.prepare(SomethingSomethingV1, os.path.join(tmp, "manual"),
                         os.path.join(tmp, "data"))
    print(f"built {_VIDEOS.value} videos x {_FRAMES.value} frames in "
          f"{time.perf_counter() - t0:.1f} s (short256, ArrayRecord)")
    train_source = smt_input.ExampleSource(builder, "train")
    eval_source = smt_input.ExampleSource(builder, "validation")
    settings = smt_input.clip_settings(d, names)
    for n in threads:
      inp = smt_input.TrainSliceInput(train_source, slice_index=0, num_slices=1, rows=8,
                                      seed=0, settings=settings, num_workers=n)
      rate = _time_input(lambda inp=inp: inp.iterate(0), _CLIPS.value)
      out["train_input"][n] = round(rate, 2)
      print(f"train input, {n} thread(s): {rate:.2f} clips/s ({rate / min(n, cores):.2f} "
            "per core)")
    for views in sorted({d.eval_views, "11x2"}):
      n = threads[-1]
      ev = smt_input.EvalInput(eval_source, batch_size=11,
                               views=smt_input.view_spec_from_config(d, views),
                               num_frames=d.num_frames, process_index=0, process_count=1,
                               num_workers=n)
      t0 = time.perf_counter()
      clips = sum(int(b["mask"].sum()) for b in ev)
      rate = clips / (time.perf_counter() - t0)
      out["eval_input"][views] = round(rate, 2)
      print(f"eval input {views}, {n} thread(s): {rate:.2f} clips/s ({rate / min(n, cores):.2f}"
            f" per core; {clips // len(eval_source)} clips a video)")

  per_core = max(v / min(int(k), cores) for k, v in out["train_input"].items())
  step_rate, flops = _time_train_step(config, _STEP_BATCH.value, _STEP_REPS.value)
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0].device_kind
  gpu_rate = _GPU_PEAK.value * 1e12 * _GPU_MFU.value / flops
  out.update(train_input_clips_per_s_per_core=round(per_core, 2),
             # null, not NaN (which strict JSON readers refuse), when the step is not timed
             train_step_clips_per_s=round(step_rate, 3) if _STEP_REPS.value else None,
             train_step_device=device, train_step_gflop_per_clip=round(flops / 1e9, 1),
             input_cores_for_this_step=(round(step_rate / per_core, 2) if _STEP_REPS.value
                                        else None),
             gpu_step_clips_per_s_estimate=round(gpu_rate, 1),
             input_cores_for_gpu_step=round(gpu_rate / per_core, 1))
  if _STEP_REPS.value:
    print(f"train step on {device}, batch {_STEP_BATCH.value}: {step_rate:.3f} clips/s "
          f"({flops / 1e9:.0f} GFLOP per clip, forward + backward)")
    print(f"input cores this step needs: {step_rate / per_core:.2f} (ratio train step / "
          f"input per core = {step_rate / per_core:.3f})")
  else:
    print(f"train step on {device}: not timed (--step_reps=0); {flops / 1e9:.0f} GFLOP "
          "per clip, forward + backward")
  print(f"a GPU step at this shape (peak {_GPU_PEAK.value:.0f} TFLOP/s x MFU "
        f"{_GPU_MFU.value:.2f}): ~{gpu_rate:.0f} clips/s -> ~{gpu_rate / per_core:.0f} "
        f"input cores at {per_core:.2f} clips/s per core")
  if _JSON.value:
    print(json.dumps(out))


if __name__ == "__main__":
  app.run(main)
