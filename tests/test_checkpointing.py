"""Checkpointer: a damaged latest step falls back to an earlier one, never deleted."""
from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import optax
import pytest

from rstg_jax.runtime import checkpointing, parallel
from rstg_jax.train.train_state import TrainState


def _state(step: int) -> TrainState:
  params = {"dense": {"kernel": jnp.full((3, 4), float(step)), "bias": jnp.zeros(4)}}
  state = TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.1, momentum=0.9))
  return state.replace(step=jnp.asarray(step, jnp.int32))


def _template():
  return checkpointing.abstract_state(jax.eval_shape(lambda: _state(0)),
                                      parallel.replicated(parallel.make_mesh()))


def _saved(directory, steps=(1, 2, 3)) -> None:
  ckpt = checkpointing.Checkpointer(str(directory), async_save=False, max_to_keep=3)
  for s in steps:
    ckpt.save(_state(s), {"data_position": s})
  ckpt.wait_until_finished()
  ckpt.close()


def _truncate(path) -> None:
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _largest_data_file(step_dir) -> str:
  data = step_dir / "state" / "d"
  return str(max(data.iterdir(), key=lambda p: p.stat().st_size))


def _tree(folder) -> dict[str, int]:
  return {os.path.relpath(os.path.join(r, f), folder): os.path.getsize(os.path.join(r, f))
          for r, _, files in os.walk(folder) for f in files}


@pytest.mark.parametrize("damage", ["data", "meta_json", "state_metadata_json"])
def test_damaged_latest_step_falls_back_and_is_kept(tmp_path, caplog, damage):
  directory = tmp_path / "checkpoints"
  _saved(directory)
  step3 = directory / "3"
  bad = {"data": lambda: _largest_data_file(step3),
         "meta_json": lambda: str(step3 / "meta" / "metadata"),
         "state_metadata_json": lambda: str(step3 / "state" / "_METADATA")}[damage]()
  _truncate(bad)
  before = _tree(step3)

  ckpt = checkpointing.Checkpointer(str(directory), async_save=False, max_to_keep=3)
  with caplog.at_level(logging.WARNING):
    state, meta = ckpt.restore(_template())
  assert int(state.step) == 2 and meta == {"data_position": 2}
  assert float(state.params["dense"]["kernel"][0, 0]) == 2.0
  info = ckpt.last_restore
  assert info.step == 2 and [s for s, _ in info.damaged] == [3]
  assert bad in info.damaged[0][1], info.damaged         # the damaged file is named
  assert any(f"step 3 ({step3}) is damaged: {bad}" in r.getMessage()
             for r in caplog.records), [r.getMessage() for r in caplog.records]
  assert any("Restored checkpoint step 2 instead of the latest step 3" in r.getMessage()
             for r in caplog.records)
  # Not deleted: moved unchanged out of Orbax's sight ...
  (moved,) = info.moved_to
  assert os.path.basename(os.path.dirname(moved)) == "damaged"
  assert _tree(moved) == before and not step3.exists()
  assert ckpt.all_steps() == [1, 2]
  # ... so training on from step 2 saves a new step 3 and retention (last 3)
  # never touches the damaged copy.
  for s in (3, 4, 5, 6):
    ckpt.save(_state(s), {"data_position": s})
  ckpt.wait_until_finished()
  assert ckpt.all_steps() == [4, 5, 6]
  assert _tree(moved) == before
  state, _ = ckpt.restore(_template())
  assert int(state.step) == 6 and ckpt.last_restore.damaged == ()
  ckpt.close()


def test_every_step_damaged_is_one_error_naming_each_and_moves_nothing(tmp_path):
  directory = tmp_path / "checkpoints"
  _saved(directory, steps=(1, 2))
  _truncate(directory / "2" / "meta" / "metadata")
  _truncate(_largest_data_file(directory / "1"))
  ckpt = checkpointing.Checkpointer(str(directory), async_save=False)
  with pytest.raises(checkpointing.CheckpointDamagedError,
                     match=r"every step is damaged .*step 2: .*2/meta/metadata \(not valid "
                           r"JSON.*; step 1: .*1/state/d/"):
    ckpt.restore(_template())
  assert ckpt.all_steps() == [1, 2] and not (directory / "damaged").exists()
  # An explicitly requested step does not fall back.
  _saved(tmp_path / "other", steps=(1, 2))
  _truncate(tmp_path / "other" / "2" / "state" / "_METADATA")
  other = checkpointing.Checkpointer(str(tmp_path / "other"), async_save=False)
  with pytest.raises(checkpointing.CheckpointDamagedError,
                     match=r"step 2 in .* is damaged: .*2/state/_METADATA"):
    other.restore(_template(), step=2)
  state, _ = other.restore(_template(), step=1)
  assert int(state.step) == 1
  ckpt.close()
  other.close()
