"""Shared builder of the Something-Something / Kinetics model configs in `configs/`.

Config files are loaded by path (ml_collections `config_flags`), so what they share
lives here: each `configs/smt_*.py` / `kinetics_*.py` calls `smt_config(arg, ...)` with
its backbone and placements. `arg` is `get_config`'s argument:

  '' (default): the released model and hyper-parameters (spec §9.5): batch 2, Nesterov
    momentum 0.9, constant learning rate 1e-4 on the SUMMED batch loss, no weight decay,
    dropout 0.3, 32 frames x 224 px, backbone BatchNorm statistics frozen, float32.
  'tiny': the same structure at tiny width (4), depth (1-2 blocks per stage, graph with
    one iteration), clip (8 frames x 64 px) and graph width (32): a CPU runs a training
    step in seconds. Used by the tests.

Top-level keys follow the trainer's (configs/syncmnist_common.py); the data keys are
read by `rstg_jax.data.smt_input` from `config.dataset`; the model keys by
`rstg_jax.models.smt_model.build_model` from `config.model`.
"""
from __future__ import annotations

import dataclasses
import os

import ml_collections

from rstg_jax.models import resnet_video
from rstg_jax.models import smt_model
from rstg_jax.models.graph_config import GraphConfig

VARIANTS = ("", "tiny")
# Something-Something v1 training videos; the original ran 100 "epochs" of an
# open-ended loop (spec §9.1), i.e. 100 * 86017 / 2 steps at batch 2.
SMT_V1_TRAIN_VIDEOS = 86_017


def smt_config(arg: str | None, *, backbone: str, place_graph: str = "none",
               place_nonlocal: str = "none") -> ml_collections.ConfigDict:
  """The experiment config of one released Something-Something model.

  Args:
    arg: '' / None for the released model, 'tiny' for the CPU-test variant.
    backbone: 'c2d' or 'i3d'.
    place_graph: 'none', 'final', 'res3-res4', ... (the original's `place_graph`).
    place_nonlocal: 'none' or e.g. 'res3-res4' (the original's `place_nonlocal`).
  """
  arg = (arg or "").strip()
  if arg not in VARIANTS:
    raise ValueError(f"unknown config variant {arg!r}; use one of {VARIANTS}")
  tiny = arg == "tiny"

  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_classes = 174

  frames = 8 if tiny else 32           # video_num_frames, fed to conv1
  image = 64 if tiny else 224
  c.dataset = ml_collections.ConfigDict(dict(
      name="something_something_v1",
      num_frames=frames,
      image_size=image,
      brightness_max_delta=0.1,
      num_eval_spatial_clips=1,        # 11 x 2 for the dense protocol (spec §9.3)
      num_eval_temporal_clips=1,
  ))

  # Graphs in res3/res4 and Non-Local blocks (after odd blocks) need 2 blocks there.
  inside = place_graph not in ("none", "final") or place_nonlocal != "none"
  stage_sizes = (((1, 2, 2, 1) if inside else (1, 1, 1, 1)) if tiny
                 else resnet_video.RESNET50_STAGE_SIZES)
  width = 4 if tiny else 64
  d = 32 if tiny else 512              # graph width; res3 (8 * width) needs no projection
  graph = dataclasses.replace(
      GraphConfig(), node_feat_dim=d, message_dims=d, image_dim=image,
      num_process_iter=1 if tiny else 3)
  fm = resnet_video.feature_map_size(image, res5_stride=1)
  c.model = ml_collections.ConfigDict(dict(
      name="smt_resnet",
      backbone=backbone,
      stage_sizes=stage_sizes,
      width=width,
      res5_stride=1,                   # the TF port; Caffe2's Kinetics nets used 2
      place_graph=place_graph,
      place_nonlocal=place_nonlocal,
      # Every GraphConfig field, so any can be overridden from the command line.
      graph=dataclasses.asdict(graph),
      final_norm="LN",                 # zero-initialised residual norm of each graph
      comb_type="plus",
      bn_mode="frozen",                # backbone BN statistics frozen (§8, §14.9)
      remat_stages="none",             # 'all' or e.g. 'res2-res3': recompute blocks
      # pool5: average over the training clip's whole res5 extent, stride 1 (§8.2).
      pool5_window=(frames // 2, fm, fm),
      classification_dropout=0.3,
      input_mean=smt_model.SMT_INPUT_MEAN,   # applied to integer (raw) input only
      input_std=smt_model.SMT_INPUT_STD,
      dtype="float32",                 # 'bfloat16': bf16 compute, float32 params
  ))

  c.batch_size = 2                     # global; the original: 2 on one GPU
  c.eval_batch_size = 8
  c.loss_reduction = "sum"             # the original's gradient (spec §9.1)
  c.optimizer = ml_collections.ConfigDict(dict(
      name="nesterov", learning_rate=1e-4, schedule="constant", warmup_steps=0,
      end_lr_factor=0.0, momentum=0.9, b1=0.9, b2=0.999, eps=1e-8,
      weight_decay=0.0, grad_clip_norm=0.0, graph_lr_factor=1.0))
  c.num_train_steps = 100 * SMT_V1_TRAIN_VIDEOS // c.batch_size
  c.log_every_steps = 50               # print_every
  c.progress_every_secs = 60.0
  c.eval_every_steps = 10_000          # full validation every 10 * eval_every
  c.checkpoint = ml_collections.ConfigDict(dict(
      every_steps=5000, keep=3, async_save=True))

  if tiny:
    c.eval_batch_size = 2
    c.num_train_steps = 10
    c.log_every_steps = 1
    c.eval_every_steps = 10
    c.checkpoint.every_steps = 10
  return c


def load_config_file(path: str | os.PathLike):
  """Imports a config file (e.g. configs/syncmnist_rstg.py) by path; returns the module."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_sibling(config_file: str, module_name: str):
  """Imports `configs/<module_name>.py` next to `config_file`.

  Config files are loaded by path, not as a package, so a module they share cannot be
  imported by name; the SyncMNIST configs share `syncmnist_common.py` this way.
  """
  return load_config_file(os.path.join(
      os.path.dirname(os.path.abspath(config_file)), f"{module_name}.py"))
