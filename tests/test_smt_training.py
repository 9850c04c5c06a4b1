"""Something-Something training end to end on tiny fake trees: every config builds
and trains through `rstg_jax.main` (v1, v2), exact resume, clear errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from rstg_configs import common as configs_common
from rstg_datasets.smt_common import fake_tree as ft
from rstg_datasets.something_something_v2 import SomethingSomethingV2
from rstg_jax import tasks as tasks_lib
from rstg_jax.data import smt_input
from rstg_jax.runtime import parallel
from rstg_jax.train import init_from as init_from_lib
from rstg_jax.train import loop
import subprocess_env
from smt_tree import _REPO, SMT_CONFIGS, arrays as _arrays, build as _build, build_v1, tiny


@pytest.fixture(scope="module")
def v1_data(tmp_path_factory):
  return build_v1(tmp_path_factory)


def test_every_config_builds_at_full_size():
  mesh = parallel.make_mesh()
  for path in configs_common.experiment_files():
    config = configs_common.get_config(path)
    task = tasks_lib.get_task(config, mesh)
    model = task.build_model()
    d = config.data
    shape = ((1, d.num_frames, d.image_size, d.image_size, 3)
             if config.task == "something_something" else (1, 10, 64, 64, 1))
    clip = jax.ShapeDtypeStruct(shape, np.uint8)
    variables = jax.eval_shape(lambda x, m=model: m.init(jax.random.key(0), x,
                                                         train=False), clip)
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    assert n > 1e6, path   # every full-size model has millions of parameters
    logits = jax.eval_shape(lambda v, x, m=model: m.apply(v, x, train=False),
                            variables, clip)
    assert logits.shape == (1, config.model.num_classes), path


def _run_main(args):
  """`python -m rstg_jax.main ARGS` in a fresh process (absl flags parse once)."""
  env = subprocess_env.without(("JAX_", "XLA_"))
  proc = subprocess.run([sys.executable, "-m", "rstg_jax.main", *args], cwd=_REPO,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout


def _main_flags(config_name: str, data_dir, workdir, name="v1", steps=2):
  return [f"--config=configs/{config_name}.py:tiny", f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}", f"--config.data.name={name}",
          "--config.batch_size=8", "--config.eval_batch_size=8",
          f"--config.num_train_steps={steps}", "--config.eval_every_steps=0"]


# One config in the default run; all of them with `-m slow` (a minute each on CPU).
@pytest.mark.parametrize("config_name", [
    c if c == "smt_i3d_rstg_final" else pytest.param(c, marks=pytest.mark.slow)
    for c in SMT_CONFIGS])
def test_tiny_config_trains_and_evaluates_through_main(config_name, v1_data, tmp_path):
  workdir = tmp_path / "run"
  out = _run_main(_main_flags(config_name, v1_data, workdir))
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["task"] == "something_something" and summary["steps"] == 2
  assert summary["validation_num_examples"] == 5
  assert summary["validation_1x1_num_videos"] == 5
  assert 0 <= summary["validation_1x1_top1"] <= summary["validation_1x1_top5"] <= 1
  res5_channels = 32 * summary["config"]["model"]["width"]
  assert summary["params_per_part"]["head"] == 174 * (res5_channels + 1)
  assert (summary["params_per_part"]["graph"] > 0) == ("rstg" in config_name)
  for suffix in ("metrics.json", "per_class.json", "confusion.json", "confusion.png",
                 "predictions.txt", "video_logits.npz"):
    assert (workdir / f"validation_1x1_{suffix}").is_file(), suffix
  assert len((workdir / "validation_1x1_predictions.txt").read_text().splitlines()) == 5
  assert "validation top-1" in out and "1x1 views: top-1" in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg for webm")
def test_v2_trains_and_evaluates_through_main(tmp_path_factory, tmp_path):
  data = _build(tmp_path_factory.mktemp("smt_v2"), SomethingSomethingV2, ft.write_v2_tree)
  workdir = tmp_path / "run"
  _run_main(_main_flags("smt_c2d", data, workdir, name="v2"))
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["steps"] == 2 and summary["validation_1x1_num_videos"] == 5
  assert summary["config"]["data"]["name"] == "v2"


class _RecordingTask(tasks_lib.get_task_class("something_something")):
  """Keeps the training input, whose sources record what they read."""

  def train_input(self):
    self.source(self.config.data.train_split).record_reads = True
    self.made_input = super().train_input()
    return self.made_input


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(v1_data, tmp_path):
  # C2D, the cheapest model: resume is the loop's and the input's business.
  config = tiny("smt_c2d", v1_data, num_train_steps=4, eval_every_steps=2)
  config.data.eval_views = "1x1"   # 8 train videos: one epoch per step
  mesh = parallel.make_mesh()
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))
  stopped = loop.train_and_evaluate(config, str(tmp_path / "resumed"), stop_at_step=2)
  assert stopped == {"stopped_at_step": 2}
  task = _RecordingTask(config, mesh)
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"), task=task)
  for key in ("validation_top1", "validation_loss", "eval_history", "validation_1x1_top1"):
    assert full[key] == resumed[key], key
  jax.tree.map(np.testing.assert_array_equal, _arrays(tmp_path / "full", 4),
               _arrays(tmp_path / "resumed", 4))
  # The resumed input read rows of steps 2 and 3 only (8 rows a step), never
  # the 16 rows of the steps already done.
  (slice_input,) = task.made_input._inputs  # pylint: disable=protected-access
  assert min(slice_input.positions_read) == 16
  assert set(range(16, 32)) <= set(slice_input.positions_read)


@pytest.mark.parametrize("overrides, error, message", [
    ({"task": "kinetics"}, tasks_lib.UnknownTaskError,
     r"config.task='kinetics' is not a known task; known: \['something_something', "
     r"'sync_mnist'\]"),
    ({"data.train_split": "train2"}, smt_input.DataError,
     r"config.data.train_split='train2' is not in the build .* \(splits: \['test', "
     r"'train', 'validation'\]\)"),
    ({"init_from": "/nonexistent/run"}, init_from_lib.InitFromError,
     r"config.init_from='/nonexistent/run': no such file or folder"),
    ({"model.num_classes": 400}, smt_input.DataError,
     r"config.model.num_classes=400 but the build .* has 174 label names"),
    ({"mode": "eval"}, loop.ConfigError, r"config.mode='eval' needs config.init_from"),
    ({"num_train_steps": -5}, loop.ConfigError, r"config.num_train_steps=-5 must be a positive number"),
])
def test_bad_configs_fail_before_training(v1_data, tmp_path, overrides, error, message):
  config = tiny("smt_c2d", v1_data, **overrides)
  with pytest.raises(error, match=message):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_init_from_folder_without_checkpoint_is_named(v1_data, tmp_path):
  (tmp_path / "empty").mkdir()
  config = tiny("smt_c2d", v1_data, init_from=str(tmp_path / "empty"))
  with pytest.raises(init_from_lib.InitFromError, match=r"holds no checkpoint"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
