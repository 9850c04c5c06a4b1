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

from rstg_jax import checkpointing
from rstg_jax import configs_lib
from rstg_jax.data import sync_mnist_input
from rstg_jax.train import loop

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
NUM_TRAIN, NUM_TEST = 48, 20


def micro_config(data_dir, model="mean"):
  module = configs_lib.load_config_file(_CONFIGS / "syncmnist_common.py")
  c = module.make_config(model, "tiny")
  c.backbone.width = c.graph.node_feat_dim = c.graph.message_dims = c.lstm.units = 8
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
  full = loop.train_and_evaluate(config, str(tmp_path / "full"), builder=builder)
  # Stop as a SIGTERM would (main's handler sets the flag that is polled here).
  polls = iter([False, False, True])
  stopped = loop.train_and_evaluate(config, str(tmp_path / "resumed"), builder=builder,
                                    stop_requested=lambda: next(polls))
  assert stopped == {"stopped_at_step": 3}
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"), builder=builder)

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
  assert ckpt.best_step() in ckpt.all_steps()
  ckpt.close()

  # The same workdir with another model fails, naming the parameter.
  other = micro_config(data_dir)
  other.backbone.width = 16
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"different model.*'params/backbone/conv1/bias' has shape "
                           r"\(8,\) in the checkpoint but \(16,\) in this model"):
    loop.train_and_evaluate(other, str(tmp_path / "full"), builder=builder)


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
                     match=r"non-finite training loss .* at step (\d+); training "
                           r"stopped\. The last good checkpoint is step (\d+)") as e:
    loop.train_and_evaluate(config, str(tmp_path), builder=builder)
  bad, good = map(int, re.search(r"at step (\d+).*is step (\d+)", str(e.value)).groups())
  assert good == bad - 1
  arrays = _state_arrays(tmp_path, good)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(arrays["params"]))
