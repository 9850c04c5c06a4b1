"""Shared builder of the Something-Something model configs in `configs/`.

Each `configs/smt_*.py` calls `smt_config(arg, ...)` with its
backbone and placements. `arg` is `get_config`'s argument:

  '' (default): the released model and hyper-parameters (spec §9.5): batch 2, Nesterov
    momentum 0.9, constant learning rate 1e-4 on the SUMMED batch loss, no weight decay,
    dropout 0.3, 32 frames x 224 px, backbone BatchNorm statistics frozen, float32;
    augmentation of §9.2 (uniform sampling, the fixed 224 crop of the short-side-256
    frames, +-0.1 brightness, no flip).
  'tiny': the same structure at tiny width (4), depth (1-2 blocks per stage, graph with
    one iteration), clip (8 frames x 64 px) and graph width (32): a CPU runs a training
    step in seconds. Used by the tests.

`config.data` is read by `rstg_jax.data.smt_input` (through the task
`rstg_jax.tasks.something_something`), `config.model` by
`rstg_jax.models.classifiers.smt_model.build_model`.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from rstg_configs import common
from rstg_jax.models.backbones import resnet_video
from rstg_jax.models.classifiers import smt_model
from rstg_jax.models.graph.graph_config import GraphConfig

VARIANTS = ("", "tiny")
# Something-Something v1 training videos; the original ran 100 "epochs" of an
# open-ended loop (spec §9.1), i.e. 100 * 86017 / 2 steps at batch 2.
SMT_V1_TRAIN_VIDEOS = 86_017


def data_config(*, num_frames: int, image_size: int) -> ml_collections.ConfigDict:
  """`config.data` of the Something-Something task."""
  return ml_collections.ConfigDict(dict(
      # 'something_something_v1' | 'something_something_v2' (or 'v1' / 'v2'),
      # optionally '/<builder config>', e.g. 'something_something_v1/original'.
      name="something_something_v1",
      data_dir=common.placeholder(str),   # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
      train_split="train",
      eval_split="validation",            # evaluated every eval_every_steps (central crop)
      # The protocol of the final evaluation report (and of mode='eval'):
      # '1x1' central crop, '3x2', or the paper's dense '11x2' (spec §9.3).
      eval_views="1x1",
      num_frames=num_frames,              # video_num_frames: sampled per clip
      image_size=image_size,              # training crop side
      sampling="uniform",                 # the paper's; 'segment': jittered segments
      # Crop side / short side, U[min, max]; None: image_size / eval_short_side,
      # the paper's fixed 224 crop of a 256 frame. (0.6, 1.0) adds scale jitter.
      crop_scale=common.placeholder(tuple),
      crop_aspect=(1.0, 1.0),
      brightness_max_delta=0.1,
      flip_prob=0.0,                      # > 0: left/right flip with label swap
      eval_short_side=common.placeholder(int),  # None: round(image_size * 256 / 224)
      num_workers=4,                      # input threads (decoding releases the GIL)
      # Training batches come from num_slices equal slices of the split, each
      # process reading its own (0: one per process; a multiple of every process
      # count makes the batches independent of it).
      num_slices=0,
  ))


def smt_config(arg: str | None, *, backbone: str, place_graph: str = "none",
               place_nonlocal: str = "none") -> ml_collections.ConfigDict:
  """The experiment config of one released Something-Something model.

  Args:
    arg: '' / None for the released model, 'tiny' for the CPU-test variant.
    backbone: 'c2d' or 'i3d'.
    place_graph: 'none', 'final', 'res3-res4', ... (the original's `place_graph`).
    place_nonlocal: 'none' or e.g. 'res3-res4' (the original's `place_nonlocal`).
  """
  tiny = common.check_variant(arg, VARIANTS) == "tiny"
  frames = 8 if tiny else 32           # video_num_frames, fed to conv1
  image = 64 if tiny else 224

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
  model = ml_collections.ConfigDict(dict(
      name="smt_resnet",
      num_classes=174,                 # spec §9.4; must equal the data's label count
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
  c = common.base_config(
      task="something_something",
      data=data_config(num_frames=frames, image_size=image),
      model=model,
      batch_size=2,                    # global; the original: 2 on one GPU
      eval_batch_size=8,
      loss_reduction="sum",            # the original's gradient (spec §9.1)
      optimizer_config=common.optimizer(name="nesterov", learning_rate=1e-4),
      num_train_steps=100 * SMT_V1_TRAIN_VIDEOS // 2,
      log_every_steps=50,              # print_every
      eval_every_steps=10_000,         # full validation every 10 * eval_every
      checkpoint_every_steps=5000)
  if tiny:
    c.eval_batch_size = 2
    c.num_train_steps = 10
    c.log_every_steps = 1
    c.eval_every_steps = 10
    c.checkpoint.every_steps = 10
    c.data.num_workers = 2
  return c
