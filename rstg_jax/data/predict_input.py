"""Videos from disk for `rstg_jax.predict`: found, read, and cut as the evaluation cuts
them.

An input path is
  - a video file (.webm, .mp4, ...), decoded with ffmpeg as the v2 builder decodes;
  - a folder of JPEG frames (the v1 layout: 00001.jpg, 00002.jpg, ...);
  - a folder of several videos and/or frame folders (each one input);
  - for SyncMNIST configs, a `.npy` clip uint8 [T, H, W(, 1)] (what the builder stores)
    or a folder of frame images (png, jpg, ...; natural order of the names).

Something-Something frames go through the same steps as a built data set and its
evaluation: the builder's storage (`config.data.name`'s builder config: short side
256 and JPEG quality 90 by default, `frame_io`), then `multiview.view_clips` at the
config's sizes (`smt_input.view_spec_from_config`): so a video gives the clips, and
logits, that the evaluation gives for it. SyncMNIST clips are used as stored; a
SyncMNIST frame folder becomes such a clip (grey, resized to the stored frame size, at
most the stored frame count, sampled evenly).

`read_input` reads one input as its config's task needs; the clips are the model's
input and the pixels it saw (uint8, not normalised), so they can also be drawn on.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

VIDEO_EXTENSIONS = (".webm", ".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")
NPY_EXTENSION = ".npy"
# Frame images of a SyncMNIST frame folder (Something-Something's are JPEG: frame_io).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class InputError(ValueError):
  """The --input path is missing or holds nothing this config can read."""


class BadInput(ValueError):
  """One input cannot be read (the message names the file and why)."""


@dataclasses.dataclass
class Clips:
  """The evaluation clips of one input.

  path: the input; clips: uint8 [V, T, H, W, C] (V views, temporal-major);
  num_frames: frames of the video; notes: what was odd but kept (e.g. padding).
  """
  path: str
  clips: np.ndarray
  num_frames: int
  notes: list[str] = dataclasses.field(default_factory=list)


def _is_frame_folder(path: str) -> bool:
  from rstg_datasets.smt_common import frame_io  # pylint: disable=g-import-not-at-top
  return os.path.isdir(path) and bool(frame_io.list_frame_files(path))


def _image_files(folder: str) -> list[str]:
  """Frame images of a folder in frame order (natural sort: f9 before f10)."""
  from rstg_datasets.smt_common import frame_io  # pylint: disable=g-import-not-at-top
  return frame_io.list_frame_files(folder, IMAGE_EXTENSIONS)


def _is_image_folder(path: str) -> bool:
  # A SyncMNIST folder of .npy clips is several inputs, one of images is one clip.
  return (os.path.isdir(path) and bool(_image_files(path)) and
          not any(n.lower().endswith(NPY_EXTENSION) for n in os.listdir(path)))


def list_inputs(path: str, task: str) -> list[str]:
  """The inputs of an --input path (one, or the entries of a folder), sorted."""
  p = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(p):
    raise InputError(f"--input={path}: no such file or folder")
  exts = (NPY_EXTENSION,) if task == "sync_mnist" else VIDEO_EXTENSIONS
  if os.path.isfile(p):
    return [p]
  if task != "sync_mnist" and _is_frame_folder(p):
    return [p]
  if task == "sync_mnist" and _is_image_folder(p):
    return [p]
  found = []
  for name in sorted(os.listdir(p)):
    full = os.path.join(p, name)
    if os.path.isfile(full) and name.lower().endswith(exts):
      found.append(full)
    elif task != "sync_mnist" and os.path.isdir(full):
      found.append(full)   # a frame folder (an empty or broken one is reported)
  if not found:
    kinds = ("'.npy' clips or frame images" if task == "sync_mnist"
             else f"video files ({', '.join(VIDEO_EXTENSIONS)}) or frame folders")
    raise InputError(f"--input={path}: the folder holds no {kinds}")
  return found


def stored_format(data_config) -> tuple[int | None, int]:
  """(short side, JPEG quality) of the builder config `config.data.name` names, as
  the data set stores frames (the default builder config when none is named)."""
  from rstg_jax.data import smt_input  # pylint: disable=g-import-not-at-top
  from rstg_datasets.smt_common import builder_base  # pylint: disable=g-import-not-at-top
  config_name = smt_input.builder_name(data_config).partition("/")[2]
  configs = {c.name: c for c in builder_base.BUILDER_CONFIGS}
  name = config_name or builder_base.SomethingSomethingBase.DEFAULT_CONFIG_NAME
  if name not in configs:
    raise InputError(f"config.data.name={data_config.name!r}: builder config {name!r} "
                     f"is not one of {sorted(configs)}")
  return configs[name].short_side, configs[name].jpeg_quality


def read_smt(path: str, data_config, views: str) -> Clips:
  """A video file or frame folder -> its evaluation clips [V, T, c, c, 3] uint8."""
  from rstg_jax.data import smt_input  # pylint: disable=g-import-not-at-top
  from rstg_datasets.smt_common import frame_io  # pylint: disable=g-import-not-at-top
  from rstg_datasets.smt_common.bad_input import BadVideoError  # pylint: disable=g-import-not-at-top
  short_side, quality = stored_format(data_config)
  try:
    if os.path.isdir(path):
      video = frame_io.read_frame_folder(path, short_side, quality)
    elif path.lower().endswith(VIDEO_EXTENSIONS):
      video = frame_io.encode_video_frames(frame_io.decode_video_file(path), short_side,
                                           quality)
    else:
      raise BadInput(f"{path}: not a video file ({', '.join(VIDEO_EXTENSIONS)}) or a "
                     "folder of .jpg frames")
  except BadVideoError as e:
    raise BadInput(f"{e.path}: {e.detail}") from None
  except RuntimeError as e:   # ffmpeg / ffprobe not installed
    raise BadInput(f"{path}: {e}") from None
  n = len(video.frames)
  if n == 0:
    raise BadInput(f"{path}: the video has no frames")
  notes = [detail for _, detail in video.notes]
  t = data_config.num_frames
  if n < t:
    notes.append(f"{path}: {n} frames, fewer than the {t} sampled: frames repeat "
                 f"(the evaluation's uniform sampling int(linspace(0, {n - 1}, {t})))")
  spec = smt_input.view_spec_from_config(data_config, views)
  example = {"frames": np.asarray(video.frames, dtype=object), "num_frames": n,
             "height": video.height, "width": video.width}
  return Clips(path, smt_input.view_clips_of(example, spec, t), n, notes)


def read_npy(path: str, video_shape: tuple[int, ...]) -> Clips:
  """A SyncMNIST clip [T, H, W] or [T, H, W, 1] in 0..255 -> Clips with one view."""
  if not path.lower().endswith(NPY_EXTENSION):
    raise BadInput(f"{path}: SyncMNIST configs read '.npy' clips uint8 "
                   f"{list(video_shape)}")
  try:
    clip = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise BadInput(f"{path}: not a readable .npy array ({e})") from None
  if clip.ndim == len(video_shape) + 1 and clip.shape[0] == 1:
    clip = clip[0]   # a batch of one, e.g. saved from a data set batch
  if clip.ndim == len(video_shape) - 1:
    clip = clip[..., None]
  if (clip.ndim == len(video_shape) and clip.shape[1:-1] == tuple(video_shape[1:-1])
      and clip.shape[-1] != video_shape[-1]):
    raise BadInput(f"{path}: {clip.shape[-1]} channels, the SyncMNIST model takes "
                   f"{video_shape[-1]} (shape {list(clip.shape)})")
  if clip.shape[1:] != tuple(video_shape[1:]) or clip.shape[0] < 1:
    raise BadInput(f"{path}: shape {list(clip.shape)}, expected [T, "
                   f"{', '.join(map(str, video_shape[1:]))}] (T={video_shape[0]} as "
                   "the data set)")
  if clip.dtype != np.uint8:
    if not np.all(np.isfinite(clip)) or clip.min() < 0 or clip.max() > 255:
      raise BadInput(f"{path}: values must be pixels in 0..255 (dtype {clip.dtype}, "
                     f"range {clip.min()}..{clip.max()})")
    clip = np.round(clip).astype(np.uint8)
  notes = []
  if clip.shape[0] != video_shape[0]:
    notes.append(f"{path}: {clip.shape[0]} frames where the data set has "
                 f"{video_shape[0]}; the model runs on all of them")
  return Clips(path, clip[None], clip.shape[0], notes)


def read_frame_images(path: str, video_shape: tuple[int, ...]) -> Clips:
  """A SyncMNIST folder of frame images -> Clips with one view uint8 [1, T, H, W, C].

  The frames (natural order of the names) are made grey (C = 1, the paper) or
  RGB (C = 3: a channel-per-class build of three classes, whose channels are
  colours) and resized to the stored frame size [H, W]; more frames than the
  data set's T are sampled evenly down to T.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  files = _image_files(path) if os.path.isdir(path) else []
  if not files:
    raise BadInput(f"{path}: a folder without frame images "
                   f"({', '.join(IMAGE_EXTENSIONS)})")
  n, (t, h, w, c) = len(files), video_shape
  if c not in (1, 3):
    raise BadInput(f"{path}: frame images hold grey or RGB, the model takes {c} channels "
                   "(give a .npy clip)")
  notes = []
  if n > t:
    files = [files[i] for i in np.linspace(0, n - 1, t).round().astype(int)]
    notes.append(f"{path}: {n} frames, {t} sampled evenly (as many as the data set has)")
  frames = []
  for f in files:
    try:
      with Image.open(f) as img:
        frame = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
        frames.append(np.asarray(frame).reshape(h, w, c))
    except OSError as e:
      raise BadInput(f"{f}: not a readable image ({e})") from None
  return Clips(path, np.stack(frames)[None], n, notes)


def read_input(path: str, config, views: str = "1x1") -> Clips:
  """One input of `list_inputs` as its task reads it: the evaluation clips of a
  Something-Something video (`views` as its protocol), or a SyncMNIST clip."""
  if config.task == "sync_mnist":
    if views != "1x1":
      raise InputError(f"--views={views}: SyncMNIST clips have one view (use 1x1)")
    from rstg_datasets.sync_mnist import sync_mnist  # pylint: disable=g-import-not-at-top
    # The shape the model was trained on: its builder config's (64x64 in the paper).
    shape = sync_mnist.SyncMnist.config_named(config.data.config).video_shape
    if os.path.isdir(path):
      return read_frame_images(path, shape)
    return read_npy(path, shape)
  return read_smt(path, config.data, views)


def read_single(input_path: str, config, command: str, log=print) -> tuple[str, Clips]:
  """The one video a single-video command (`command`: '--stream', 'explain') takes:
  (its path, its 1x1 evaluation `Clips`); the reader's notes go to `log`. A folder
  of several videos is an InputError."""
  paths = list_inputs(input_path, config.task)
  if len(paths) != 1:
    raise InputError(f"{command} takes one video; --input={input_path} holds "
                     f"{len(paths)}")
  clips = read_input(paths[0], config, "1x1")
  for note in clips.notes:
    log(f"NOTE {note}")
  return paths[0], clips


def keep_tensorflow_off_accelerators() -> None:
  """TensorFlow only decodes frames here; left alone it would take the GPU's memory
  that JAX needs."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
