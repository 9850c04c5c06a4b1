"""One process of a multi-process `rstg_jax.main` job, instrumented for tests.

tests/test_multiprocess.py starts this through experiments/launch/local_cpu.sh
(`-p "python tests/multiprocess_worker.py"`). It runs the real main job, and
on the side records what this process did, into $RSTG_TEST_OUT:
  process_<i>.json: per training step, hashes of the videos this process fed;
    the videos it counted in evaluation (mask 1);
  process_<i>.npz: its final parameters, one copy per local device
    (`dev<j>/<path>`), taken from the last train step's output in memory.

With RSTG_TEST_SIGTERM_AT_STEP=k, process RSTG_TEST_SIGTERM_PROCESS (default
1) sends SIGTERM to the launcher when it loads the batch of its k-th step; the
launcher forwards it to every process, as SLURM does on pre-emption. Later
steps then sleep RSTG_TEST_SLOW_S seconds so that the signal lands while the
job is still training.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time

import numpy as np

from rstg_jax import main as main_lib
from rstg_jax.runtime import parallel

_OUT = os.environ.get("RSTG_TEST_OUT")
_SIGTERM_AT = int(os.environ.get("RSTG_TEST_SIGTERM_AT_STEP", "0"))
_SIGTERM_PROCESS = int(os.environ.get("RSTG_TEST_SIGTERM_PROCESS", "1"))
_SLOW_S = float(os.environ.get("RSTG_TEST_SLOW_S", "0.5"))

_record = {"train": [], "eval": []}
_last_state = []


def _hash(video: np.ndarray) -> str:
  return hashlib.sha1(np.ascontiguousarray(video).tobytes()).hexdigest()[:16]


def _signal_launcher() -> None:
  parent = os.getppid()
  with open(f"/proc/{parent}/cmdline", "rb") as f:
    cmdline = f.read().replace(b"\0", b" ").decode()
  if "local_cpu.sh" not in cmdline:   # never signal anything but our launcher
    raise RuntimeError(f"parent {parent} is not local_cpu.sh: {cmdline!r}")
  os.kill(parent, signal.SIGTERM)


_original_host_to_global = parallel.host_to_global


def _host_to_global(batch, mesh):
  import jax  # pylint: disable=g-import-not-at-top
  if "mask" in batch:
    _record["eval"] += [_hash(v) for v, m in zip(batch["video"], batch["mask"]) if m]
  else:
    _record["train"].append([_hash(v) for v in batch["video"]])
    k = len(_record["train"])
    if _SIGTERM_AT and jax.process_index() == _SIGTERM_PROCESS:
      if k == _SIGTERM_AT:
        _signal_launcher()
      if k >= _SIGTERM_AT:
        time.sleep(_SLOW_S)
  return _original_host_to_global(batch, mesh)


_original_jit_train_step = parallel.jit_train_step


def _jit_train_step(step_fn, mesh):
  jitted = _original_jit_train_step(step_fn, mesh)

  def step(state, batch):
    new_state, metrics = jitted(state, batch)
    _last_state[:] = [new_state]
    return new_state, metrics
  return step


def _dump() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if not _OUT:
    return
  os.makedirs(_OUT, exist_ok=True)
  i = jax.process_index()
  with open(os.path.join(_OUT, f"process_{i}.json"), "w") as f:
    json.dump(dict(_record, process_count=jax.process_count(),
                   local_devices=jax.local_device_count()), f)
  if _last_state:
    arrays = {}
    flat, _ = jax.tree_util.tree_flatten_with_path(_last_state[0].params)
    for path, leaf in flat:
      name = jax.tree_util.keystr(path)
      for j, shard in enumerate(leaf.addressable_shards):
        arrays[f"dev{j}/{name}"] = np.asarray(shard.data)
    np.savez(os.path.join(_OUT, f"process_{i}.npz"), **arrays)


_original_main = main_lib.main


def _main(argv):
  try:
    _original_main(argv)
  finally:
    _dump()


if __name__ == "__main__":
  parallel.host_to_global = _host_to_global
  parallel.jit_train_step = _jit_train_step
  main_lib.main = _main
  main_lib.run()
