"""Training batches whose order does not depend on the number of processes.

The training split is cut into `num_slices` equal, contiguous slices. Every
global batch takes `global_batch / num_slices` examples from each slice, in
slice order, and process p of P reads slices [p * S/P, (p + 1) * S/P): its
rows of the global batch, and nothing else (no process reads data another
one uses). The global batch of step s is therefore a function of (seed,
num_slices, s) alone: the same job run on 1, 2 or 4 processes (any divisor of
num_slices) sees the same batches and, up to floating-point summation order,
computes the same model; a pre-empted job may resume on a different number
of hosts.

With num_slices equal to the process count (the default of the training
loop) each process reads one slice: plain per-host data sharding.

A slice is read by any per-slice input with the interface of
`sync_mnist_input.TrainInput` (`iterate(start_step)`, `steps_per_epoch`,
`num_examples`, `element_shape(key)`), built by a factory given (slice index, slice count, rows
per step, seed). Each slice is shuffled with its own seed so that slices are
not permuted alike.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

Batch = dict[str, np.ndarray]
# (slice_index, num_slices, batch_size, seed) -> a per-slice training input.
SliceInputFactory = Callable[[int, int, int, int], Any]


def slice_seed(seed: int, slice_index: int, num_slices: int) -> int:
  """The shuffle seed of one slice (the run seed itself for a single slice)."""
  if num_slices == 1:
    return seed
  return int(np.random.SeedSequence([seed, slice_index, num_slices])
             .generate_state(1)[0] % (2**31 - 1))


def check_slices(global_batch: int, num_slices: int, process_count: int) -> None:
  """Clear errors for slice counts that cannot be split."""
  if num_slices < 1:
    raise ValueError(f"config.data.num_slices={num_slices} must be >= 1 (or 0 "
                     "for one slice per process)")
  if num_slices % process_count:
    raise ValueError(
        f"config.data.num_slices={num_slices} must be a multiple of the number "
        f"of processes ({process_count})")
  if global_batch % num_slices:
    raise ValueError(
        f"config.batch_size={global_batch} must divide by "
        f"config.data.num_slices={num_slices}")


class SlicedTrainInput:
  """This process's rows of every global training batch.

  Args:
    make_slice_input: factory (slice_index, num_slices, batch_size, seed) ->
      per-slice input (e.g. a sync_mnist_input.TrainInput reading slice
      `slice_index` of `num_slices` with `batch_size` rows per step).
    global_batch: rows per step over all processes.
    num_slices: slices of the split (a multiple of process_count).
    seed: the run seed.
    process_index, process_count: this process (default: jax's).
  """

  def __init__(self, make_slice_input: SliceInputFactory, *, global_batch: int,
               num_slices: int, seed: int, process_index: int | None = None,
               process_count: int | None = None):
    if process_index is None or process_count is None:
      import jax  # pylint: disable=g-import-not-at-top
      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    check_slices(global_batch, num_slices, process_count)
    per = num_slices // process_count
    self.slice_indices = list(range(process_index * per, (process_index + 1) * per))
    self.batch_size = global_batch // process_count      # this process's rows
    rows = global_batch // num_slices
    self._inputs = [make_slice_input(i, num_slices, rows,
                                     slice_seed(seed, i, num_slices))
                    for i in self.slice_indices]
    steps = {inp.steps_per_epoch for inp in self._inputs}
    if len(steps) != 1:
      # Unequal slices would end their epochs at different steps.
      raise ValueError(f"the {num_slices} slices of the training split have "
                       f"different numbers of steps per epoch: {sorted(steps)}")
    self.steps_per_epoch = steps.pop()
    self.num_examples = sum(inp.num_examples for inp in self._inputs)
    self.num_slices = num_slices

  def element_shape(self, key: str) -> tuple[int, ...]:
    """Shape of one example's `key` (as the per-slice inputs report it)."""
    return self._inputs[0].element_shape(key)

  def iterate(self, start_step: int = 0) -> Iterator[Batch]:
    """This process's rows for steps start_step, start_step + 1, ..."""
    iterators = [inp.iterate(start_step) for inp in self._inputs]
    if len(iterators) == 1:
      yield from iterators[0]
      return
    for parts in zip(*iterators):
      yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
