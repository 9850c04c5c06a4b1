"""The main job: command line, config checking, end to end on a micro config."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from absl import flags
import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _run_main(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "rstg_jax.main", *args], cwd=_REPO,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("override, message", [
    ("--config.batch_sise=4",
     "--config.batch_sise: no such config field; did you mean 'batch_size'?"),
    ("--config.optimizer.lerning_rate=0.1",
     "--config.optimizer.lerning_rate: no such config field; did you mean "
     "'learning_rate'?"),
    ("--config.batch_size=four", "flag --config.batch_size=four: invalid literal"),
])
def test_config_typos_fail_loudly(tmp_path, override, message):
  # Flags are parsed before JAX or TensorFlow load, so this fails in seconds.
  r = _run_main("--config=configs/syncmnist_rstg.py:tiny", f"--workdir={tmp_path}",
                override)
  assert r.returncode != 0
  assert message in r.stderr
  assert not list(tmp_path.iterdir()), "nothing may start on a bad config"


def test_unknown_config_variant_fails(tmp_path):
  r = _run_main("--config=configs/syncmnist_rstg.py:tiyn", f"--workdir={tmp_path}")
  assert r.returncode != 0
  assert "unknown config variant 'tiyn'" in r.stderr


def test_main_trains_evaluates_and_writes_summary(tmp_path, capsys, monkeypatch):
  from rstg_jax import main  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "run"
  argv = ["rstg-train", "--config=configs/syncmnist_rstg.py:tiny",
          f"--workdir={workdir}",
          f"--config.data.data_dir={tmp_path / 'data'}",
          "--config.data.config=digits3_tiny", "--config.data.num_train=16",
          "--config.data.num_test=10",
          "--config.model.backbone.width=8", "--config.model.graph.node_feat_dim=8",
          "--config.model.graph.message_dims=8", "--config.model.graph.num_process_iter=1",
          "--config.batch_size=8", "--config.eval_batch_size=8",
          "--config.num_train_steps=2", "--config.optimizer.warmup_steps=1",
          "--config.eval_every_steps=0"]
  # config_flags reads the --config.x overrides from sys.argv.
  monkeypatch.setattr(sys, "argv", argv)
  cwd = os.getcwd()
  os.chdir(_REPO)
  try:
    flags.FLAGS(argv)
    main.main(argv[:1])
  finally:
    flags.FLAGS.unparse_flags()
    os.chdir(cwd)
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  assert summary["steps"] == 2
  assert summary["test_num_examples"] == 10       # 10 videos, batches of 8
  assert 0.0 <= summary["test_top1"] <= summary["test_top5"] <= 1.0
  assert 0.0 <= summary["test_pair_top1"] <= 1.0  # the eval batches carry digits
  assert summary["train_seconds"] > 0
  assert summary["config"]["model"]["head"] == "rstg"
  assert summary["config"]["model"]["graph"]["num_process_iter"] == 1
  assert (workdir / "checkpoints" / "2").is_dir()
  assert list(workdir.glob("events.out.tfevents*"))
  assert "test top-1" in capsys.readouterr().out
