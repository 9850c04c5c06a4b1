"""tf.data input pipelines over the SyncMNIST tfds builder.

Training: every process reads its own contiguous, equal-sized slice of the
split (`tfds.even_splits`), shuffles it with a seed derived from
(config.seed, epoch) and batches it, dropping the remainder of each epoch. The
batch at step s is therefore a pure function of (seed, s): a resumed run
starts at epoch s // steps_per_epoch and skips s % steps_per_epoch batches,
and sees exactly the batches an uninterrupted run sees.

Evaluation: every process reads its own slice of the split, padded with
zero videos of `mask` 0 up to the same number of batches on every process, so
every video counts exactly once whatever the batch size or process count.

Batches are dicts of numpy arrays: `video` uint8 [B, T, H, W, C], `label`
int32 [B] and, for evaluation, `mask` float32 [B] and `digits` int32 [B, n]
(the classes of the n digits, for the synchronous-pair accuracy).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

from clu import deterministic_data
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import rstg_datasets

Batch = dict[str, np.ndarray]


def epoch_seed(seed: int, epoch: int) -> int:
  """A well-mixed shuffle seed for one epoch."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def process_split(split: str, process_index: int, process_count: int,
                  *, drop_remainder: bool) -> str:
  """This process's slice of `split` (a tfds split string)."""
  return tfds.even_splits(split, n=process_count,
                          drop_remainder=drop_remainder)[process_index]


def _select(example: dict[str, Any]) -> dict[str, tf.Tensor]:
  return {"video": tf.cast(example["video"], tf.uint8),
          "label": tf.cast(example["label"], tf.int32)}


def _select_eval(example: dict[str, Any]) -> dict[str, tf.Tensor]:
  # The digit classes feed the synchronous-pair accuracy (SyncPairAccuracy).
  return {**_select(example), "digits": tf.cast(example["digits"], tf.int32)}


def _num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  return int(builder.info.splits[split].num_examples)


def _read(builder, split: str, *, shuffle_seed: int | None,
          select=_select) -> tf.data.Dataset:
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed)
  ds = builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                          read_config=read_config)
  return ds.map(select, num_parallel_calls=tf.data.AUTOTUNE)


class TrainInput:
  """Infinite, deterministic training batches of one process.

  Args:
    builder: a prepared tfds builder with `video` and `label` features.
    split: e.g. 'train'.
    batch_size: this process's batch (global batch / process count).
    seed: the run seed; epoch e is shuffled with epoch_seed(seed, e).
    shuffle_buffer: tf.data shuffle buffer (examples); 0 means the whole slice.
    cache: keep decoded examples in memory across epochs (small data sets).
    process_index, process_count: this process's slice (default: jax's).
  """

  def __init__(self, builder, *, split: str, batch_size: int, seed: int,
               shuffle_buffer: int = 0, cache: bool = False,
               process_index: int | None = None,
               process_count: int | None = None):
    import jax  # pylint: disable=g-import-not-at-top
    self.process_index = (jax.process_index() if process_index is None
                          else process_index)
    self.process_count = (jax.process_count() if process_count is None
                          else process_count)
    self._builder = builder
    self.split = process_split(split, self.process_index, self.process_count,
                               drop_remainder=True)
    self.num_examples = _num_examples(builder, self.split)
    self.batch_size = batch_size
    self.steps_per_epoch = self.num_examples // batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(
          f"config.batch_size: this process's batch of {batch_size} is larger "
          f"than its slice '{self.split}' of {self.num_examples} examples")
    self.seed = seed
    self.shuffle_buffer = shuffle_buffer or self.num_examples
    self._cached = (_read(builder, self.split, shuffle_seed=None).cache()
                    if cache else None)

  def element_shape(self, key: str) -> tuple[int, ...]:
    """Shape of one example's `key` (e.g. 'video' -> (T, H, W, C))."""
    return tuple(self._builder.info.features[key].shape)

  def epoch_dataset(self, epoch: int) -> tf.data.Dataset:
    """The batches of one epoch (a pure function of seed and epoch)."""
    s = epoch_seed(self.seed, epoch)
    ds = (self._cached if self._cached is not None
          else _read(self._builder, self.split, shuffle_seed=s))
    ds = ds.shuffle(self.shuffle_buffer, seed=s, reshuffle_each_iteration=False)
    return ds.batch(self.batch_size, drop_remainder=True)

  def iterate(self, start_step: int = 0) -> Iterator[Batch]:
    """Batches for steps start_step, start_step + 1, ... (forever)."""
    epoch, offset = divmod(start_step, self.steps_per_epoch)
    while True:
      ds = self.epoch_dataset(epoch)
      if offset:
        ds = ds.skip(offset)
      yield from ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
      epoch, offset = epoch + 1, 0


@dataclasses.dataclass
class EvalInput:
  """Padded, masked evaluation batches of one process (re-iterable).

  Every process yields `num_batches` batches (the same number everywhere, as
  the jitted step needs all processes); real examples carry mask 1.
  """

  builder: Any
  split: str
  batch_size: int
  cache: bool = False
  process_index: int | None = None
  process_count: int | None = None

  def __post_init__(self):
    import jax  # pylint: disable=g-import-not-at-top
    if self.process_index is None:
      self.process_index = jax.process_index()
    if self.process_count is None:
      self.process_count = jax.process_count()
    slices = tfds.even_splits(self.split, n=self.process_count,
                              drop_remainder=False)
    sizes = [_num_examples(self.builder, s) for s in slices]
    self.num_examples = sum(sizes)                      # over all processes
    self.local_split = slices[self.process_index]
    self.local_examples = sizes[self.process_index]
    self.num_batches = max(1, math.ceil(max(sizes) / self.batch_size))
    ds = _read(self.builder, self.local_split, shuffle_seed=None,
               select=_select_eval)
    self._ds = ds.cache() if self.cache else ds

  def _padded(self) -> tf.data.Dataset:
    # clu adds `mask` (True for real examples) and zero examples up to num_batches.
    ds = deterministic_data.pad_dataset(
        self._ds, batch_dims=[self.batch_size], pad_up_to_batches=self.num_batches,
        cardinality=self.local_examples)
    ds = ds.map(lambda ex: {**ex, "mask": tf.cast(ex["mask"], tf.float32)})
    return ds.batch(self.batch_size, drop_remainder=True)

  def __iter__(self) -> Iterator[Batch]:
    return self._padded().prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def load_builder(data_cfg: Any):
  """The prepared SyncMNIST tfds builder of `config.data`, built if absent.

  `config.data.config` names a registered builder config (e.g. digits3_small);
  `config.data.num_train` / `num_test`, when set, resize it (a custom config
  named e.g. `digits3_small_n20000x1000`, generated the same way).

  With several processes, process 0 generates the data (deterministic, so any
  process could) while the others wait at a barrier; a data_dir on a shared
  file system is then read by all.
  """
  import dataclasses as dc  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  if data_cfg.name != "sync_mnist":
    raise ValueError(f"config.data.name={data_cfg.name!r}: this pipeline reads "
                     "'sync_mnist' only")
  from rstg_datasets import sync_mnist  # pylint: disable=g-import-not-at-top
  data_dir = rstg_datasets.resolve_data_dir(data_cfg.data_dir)
  try:
    base = sync_mnist.SyncMnist.config_named(data_cfg.config)
  except ValueError as e:
    raise ValueError(f"config.data.config: {e}") from None
  num_train = data_cfg.get("num_train") or None
  num_test = data_cfg.get("num_test") or None
  if num_train is None and num_test is None:
    def make():
      return tfds.builder(f"sync_mnist/{data_cfg.config}", data_dir=data_dir)
    build = lambda: sync_mnist.build_if_missing(data_cfg.config, data_dir)  # noqa: E731
  else:
    n_train = num_train or base.num_train
    n_test = num_test or base.num_test
    custom = dc.replace(base, name=f"{base.name}_n{n_train}x{n_test}",
                        description=f"{base.name} resized to {n_train} train / "
                        f"{n_test} test videos",
                        num_train=n_train, num_test=n_test)
    def make():
      return tfds.builder("sync_mnist", config=custom, data_dir=data_dir)
    def build():
      builder = make()
      if not builder.is_prepared():
        builder.download_and_prepare()
  if data_cfg.build_if_missing:
    if jax.process_index() == 0:
      build()
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("sync_mnist_built")
  builder = make()
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"SyncMNIST '{builder.builder_config.name}' is not prepared in "
        f"{data_dir}; set config.data.build_if_missing=True or "
        "config.data.data_dir")
  return builder
