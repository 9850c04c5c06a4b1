"""An order-preserving, bounded-memory parallel map over threads.

Frame decoding, resizing and JPEG encoding in Pillow release the GIL, so
threads give real parallelism here without Beam or process pools; results come
back in input order, so tfds receives examples in the order of the split file.
"""
from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_thread_map(fn: Callable[[T], R], items: Iterable[T],
                       num_workers: int) -> Iterator[tuple[T, R]]:
  """Yields (item, fn(item)) in input order, at most 4*num_workers in flight."""
  if num_workers <= 1:
    for item in items:
      yield item, fn(item)
    return
  window = 4 * num_workers
  with concurrent.futures.ThreadPoolExecutor(num_workers) as executor:
    pending = collections.deque()
    for item in items:
      pending.append((item, executor.submit(fn, item)))
      if len(pending) >= window:
        head, future = pending.popleft()
        yield head, future.result()
    while pending:
      head, future = pending.popleft()
      yield head, future.result()
