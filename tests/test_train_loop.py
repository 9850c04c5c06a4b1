"""The training loop on a micro SyncMNIST: exact resume, evaluation counts,
checkpoint mismatches and non-finite losses."""
from __future__ import annotations

import json
import os
import pathlib
import re

import jax
import numpy as np
import pytest

from rstg_configs import syncmnist_common
from rstg_jax.data import sync_mnist_input
from rstg_jax.runtime import checkpointing
from rstg_jax.train import loop

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
NUM_TRAIN, NUM_TEST = 48, 20


def micro_config(data_dir, model="mean"):
  module = syncmnist_common
  c = module.make_config(model, "tiny")
  m = c.model
  m.backbone.width = m.graph.node_feat_dim = m.graph.message_dims = m.lstm.units = 8
  c.data.config = "digits3_tiny"
  c.data.num_train, c.data.num_test = NUM_TRAIN, NUM_TEST
  c.data.data_dir = str(data_dir)
  c.batch_size = 8                 # 6 steps per epoch
  c.eval_batch_size = 8            # does not divide the 20 test videos
  c.num_train_steps = 8            # crosses an epoch boundary
  c.optimizer.warmup_steps = 2
  c.log_every_steps = 2
  c.eval_every_steps = 4
  c.checkpoint.every_steps = 2
  c.checkpoint.keep = 2
  return c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("sync_mnist")
  builder = sync_mnist_input.load_builder(micro_config(data_dir).data)
  return data_dir, builder


def test_train_batches_are_a_function_of_seed_and_step(data):
  _, builder = data
  train = sync_mnist_input.TrainInput(builder, split="train", batch_size=8, seed=3,
                                      cache=True)
  assert train.steps_per_epoch == 6
  it = train.iterate(0)
  first = [next(it) for _ in range(9)]
  resumed = train.iterate(4)
  for k in range(4, 9):
    b = next(resumed)
    np.testing.assert_array_equal(b["video"], first[k]["video"])
    np.testing.assert_array_equal(b["label"], first[k]["label"])
  # Epochs are shuffled differently, and every epoch sees distinct videos.
  epoch0 = np.concatenate([b["video"] for b in first[:6]])
  assert len({v.tobytes() for v in epoch0}) == NUM_TRAIN
  assert not np.array_equal(first[0]["video"], first[6]["video"])


@pytest.mark.parametrize("batch_size", [7, 20, 32])
def test_evaluation_counts_every_video_once(data, batch_size):
  _, builder = data
  # Two processes' slices, padded to the same number of batches.
  seen, batches = [], set()
  for p in range(2):
    ev = sync_mnist_input.EvalInput(builder, "test", batch_size, process_index=p,
                                    process_count=2)
    n = 0
    for b in ev:
      n += 1
      assert b["video"].shape[0] == batch_size
      seen += [v.tobytes() for v, m in zip(b["video"], b["mask"]) if m == 1]
      assert np.all(b["video"][b["mask"] == 0] == 0)
    batches.add(n)
    assert ev.num_examples == NUM_TEST
  assert len(batches) == 1, "processes must run the same number of eval steps"
  assert len(seen) == NUM_TEST and len(set(seen)) == NUM_TEST


def _state_arrays(workdir, step):
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  arrays = ckpt.restore_arrays(step)
  ckpt.close()
  return arrays


def test_resumed_run_equals_uninterrupted_run(data, tmp_path):
  data_dir, builder = data
  config = micro_config(data_dir)
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))
  # Stop as a SIGTERM would (main's handler sets the flag that is polled here).
  polls = iter([False, False, True])
  stopped = loop.train_and_evaluate(config, str(tmp_path / "resumed"),
                                    stop_requested=lambda: next(polls))
  assert stopped == {"stopped_at_step": 3}
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))

  with open(tmp_path / "full" / "summary.json") as f:
    assert json.load(f)["test_top1"] == full["test_top1"]
  assert full["steps"] == resumed["steps"] == 8
  assert full["test_num_examples"] == NUM_TEST
  for key in ("test_top1", "test_top5", "test_pair_top1", "test_loss", "eval_history"):
    assert full[key] == resumed[key], key
  a, b = _state_arrays(tmp_path / "full", 8), _state_arrays(tmp_path / "resumed", 8)
  jax.tree.map(np.testing.assert_array_equal, a, b)   # bit-identical
  # Retention: the last `keep` steps plus the best evaluated one.
  ckpt = checkpointing.Checkpointer(str(tmp_path / "full" / "checkpoints"))
  assert ckpt.all_steps()[-2:] == [6, 8]
  history = full["eval_history"]
  assert [h["step"] for h in history] == [4, 8]
  best = max(history, key=lambda h: h["top1"])   # ties: orbax keeps the later
  assert ckpt.best_step() == max(h["step"] for h in history if h["top1"] == best["top1"])
  assert full["best_step"] == ckpt.best_step()
  ckpt.close()

  # The same workdir with another model fails, naming the parameter.
  other = micro_config(data_dir)
  other.model.backbone.width = 16
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"different model.*'params/backbone/conv1/bias' has shape "
                           r"\(8,\) in the checkpoint but \(16,\) in this model"):
    loop.train_and_evaluate(other, str(tmp_path / "full"))


def test_batch_that_does_not_divide_the_devices_fails_before_any_work(tmp_path):
  config = micro_config(tmp_path / "no_data")
  config.eval_batch_size = 12
  with pytest.raises(ValueError, match=r"config\.eval_batch_size=12 must be a positive "
                     r"multiple of the number of devices \(8\)"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "no_data").exists()


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    data, tmp_path):
  data_dir, builder = data
  config = micro_config(data_dir)
  config.optimizer.name = "nesterov"
  config.optimizer.schedule = "constant"
  config.optimizer.warmup_steps = 0
  config.optimizer.grad_clip_norm = 0.0
  config.optimizer.learning_rate = 1e30     # step 1 is finite, then it explodes
  config.checkpoint.every_steps = 1
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"step (\d+): .*training stopped and step \d+ was not saved\. "
                           r"The last good checkpoint is step (\d+)") as e:
    loop.train_and_evaluate(config, str(tmp_path))
  bad, good = map(int, re.search(r"step (\d+):.*is step (\d+)", str(e.value)).groups())
  assert good == bad - 1
  arrays = _state_arrays(tmp_path, good)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(arrays["params"]))


def test_an_update_that_makes_the_state_non_finite_is_never_saved(data, tmp_path):
  # Issue 14.1: resume a finite run with a learning rate that overflows the
  # parameters; loss and gradient of that step are still finite (computed
  # before the update), so only a check of the updated state catches it.
  data_dir, _ = data
  config = micro_config(data_dir)
  config.optimizer.name, config.optimizer.schedule = "nesterov", "constant"
  config.optimizer.warmup_steps = 0
  config.optimizer.grad_clip_norm = 0.0   # so the message suggests it
  config.checkpoint.every_steps = 1
  config.num_train_steps = 2
  loop.train_and_evaluate(config, str(tmp_path))
  config.num_train_steps = 8
  config.optimizer.learning_rate = 1e39   # inf in float32
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"step 3: the parameters or statistics after the update are "
                           r"NaN/Inf; training stopped and step 3 was not saved\. The "
                           r"last good checkpoint is step 2 .* or set "
                           r"config\.optimizer\.grad_clip_norm"):
    loop.train_and_evaluate(config, str(tmp_path))
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.all_steps() == [1, 2]
  assert ckpt.best_step() == 2
  ckpt.close()
  for step in (1, 2):
    arrays = _state_arrays(tmp_path, step)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(arrays["params"]))


def test_a_workdir_whose_checkpoints_were_deleted_is_not_silently_restarted(
    data, tmp_path):
  # Issue 14.4.
  data_dir, _ = data
  config = micro_config(data_dir)
  config.num_train_steps = 3
  loop.train_and_evaluate(config, str(tmp_path))
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(tmp_path / "checkpoints")
  with pytest.raises(loop.ConfigError, match=r"holds a previous run \(summary\.json\) "
                     r"but no checkpoint in .*checkpoints: were they deleted\?.*"
                     r"--config\.allow_restart=True"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")
  config.allow_restart = True
  assert loop.train_and_evaluate(config, str(tmp_path))["steps"] == 3
