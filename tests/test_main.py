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
     "--config.batch_sise: no such config field; did you mean --config.batch_size?"),
    ("--config.optimizer.lerning_rate=0.1",
     "--config.optimizer.lerning_rate: no such config field; did you mean "
     "--config.optimizer.learning_rate?"),
    ("--config.optimzer.learning_rate=0.1",
     "--config.optimzer.learning_rate: no such config field; did you mean "
     "--config.optimizer.learning_rate?"),
    ("--config.batch_size=four", "--config.batch_size=four: expected an int"),
    ("--config.batch_size=abc", "--config.batch_size=abc: expected an int"),
    ("--config.optimizer.learning_rate=fast",
     "--config.optimizer.learning_rate=fast: expected a float"),
])
def test_config_typos_fail_loudly(tmp_path, override, message):
  # Flags are parsed before JAX or TensorFlow load, so this fails in seconds.
  r = _run_main("--config=configs/syncmnist_rstg.py:tiny", f"--workdir={tmp_path}",
                override)
  assert r.returncode != 0
  assert message in r.stderr
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr  # one clear line
  assert not list(tmp_path.iterdir()), "nothing may start on a bad config"


@pytest.mark.parametrize("steps", ["-5", "0"])
def test_non_positive_num_train_steps_is_one_line_naming_the_field(tmp_path, steps):
  r = _run_main("--config=configs/syncmnist_rstg.py:tiny", f"--workdir={tmp_path}",
                f"--config.num_train_steps={steps}")
  assert r.returncode != 0
  assert "Traceback" not in r.stderr and "warmup" not in r.stderr, r.stderr
  errors = [l for l in r.stderr.splitlines() if l.startswith("ERROR:")]
  assert errors == [f"ERROR: config.num_train_steps={steps} must be a positive number "
                    "of training steps (>= 1)"], r.stderr
  assert not list(tmp_path.iterdir()), "nothing may start on a bad config"


def _flag_lines(help_text: str) -> list[str]:
  """The flag lines of absl's --help (without the module header line)."""
  flag_part = help_text.split("\nflags:\n", 1)[1]
  return [l for l in flag_part.splitlines() if l.startswith(" ")]


def test_console_script_help_shows_the_flags_of_python_m(tmp_path):
  """`rstg-train --help` (a pip console script: a __main__ without docstring or
  flags) prints the same flags and usage text as `python -m rstg_jax.main --help`."""
  script = tmp_path / "rstg-train"
  # What pip writes for `console_scripts = rstg-train=rstg_jax.main:run`.
  script.write_text("import re\nimport sys\nfrom rstg_jax.main import run\n"
                    "if __name__ == '__main__':\n"
                    "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                    "    sys.exit(run())\n")
  console = subprocess.run([sys.executable, str(script), "--help"], cwd=_REPO,
                           capture_output=True, text=True, timeout=120)
  module = _run_main("--help")
  flags_shown = _flag_lines(module.stdout)
  assert any(l.startswith("  --config:") for l in flags_shown)
  assert any(l.startswith("  --workdir:") for l in flags_shown)
  assert _flag_lines(console.stdout) == flags_shown
  assert "rstg-train ... (the same flags)" in console.stdout


def test_override_check_unit():
  import ml_collections  # pylint: disable=g-import-not-at-top
  from rstg_jax import config_check  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict({"batch_size": 8, "cache": False, "name": "x",
                                 "optimizer": {"learning_rate": 0.1, "warmup_steps": 2}})
  c.lock()
  check = lambda *a: config_check.check_overrides(c, list(a))  # noqa: E731
  assert check("--config.batch_size=4", "--config.cache", "--noconfig.cache",
               "--config.optimizer.learning_rate=1", "--config.name=y",
               "--config.optimizer.warmup_steps", "3") is None
  assert check("--config.optimizer.warmup_steps", "x") == (
      "--config.optimizer.warmup_steps x: expected an int")
  assert check("--config.cache=maybe") == "--config.cache=maybe: expected a bool (true/false)"
  assert check("--config.zzz=1") == "--config.zzz: no such config field"
  assert check("--config.optimizer.warmup_step=1") == (
      "--config.optimizer.warmup_step: no such config field; did you mean "
      "--config.optimizer.warmup_steps?")


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
  # The evaluation report of the last evaluation's logits, as Something-Something's.
  assert summary["report"] == str(workdir / "test_metrics.json")
  with open(workdir / "test_metrics.json") as f:
    report = json.load(f)
  assert report["num_videos"] == 10
  assert report["top1"] == pytest.approx(summary["test_top1"])
  assert report["top5"] == pytest.approx(summary["test_top5"])
  assert summary["test_mean_class_accuracy"] == report["mean_class_accuracy"]
  from rstg_jax.train import eval_report  # pylint: disable=g-import-not-at-top
  matrix, names = eval_report.read_confusion_json(str(workdir / "test_confusion.json"))
  assert matrix.shape == (46, 46) and int(matrix.sum()) == 10
  assert names[0] == "0-1" and names[-1] == "no_sync"
  with open(workdir / "test_per_class.json") as f:
    assert sum(c["count"] for c in json.load(f).values()) == 10
  assert (workdir / "test_confusion.png").is_file()
