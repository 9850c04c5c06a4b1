"""experiments/syncmnist: the comparison writes results.json per model, the seed
aggregate reads it back, and bad aggregate input is one clear line."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import subprocess_env

_REPO = pathlib.Path(__file__).resolve().parents[1]
_SCRIPTS = _REPO / "experiments" / "syncmnist"


def _run(script, *args, cwd):
  return subprocess.run(
      [sys.executable, str(_SCRIPTS / script), *args], cwd=cwd, capture_output=True,
      text=True, timeout=600, env=subprocess_env.without(("JAX_", "XLA_", "TFDS_")))


def test_compare_two_seeds_then_aggregate(tmp_path):
  common = ["--models=rstg_time,conv3d", "--steps=4", "--eval_every=2", "--width=4",
            "--graph_width=8", "--num_train=32", f"--data_dir={tmp_path / 'tfds'}"]
  for seed in (0, 1):
    # Seed 1 with an override that changes nothing; its titles must still show it.
    extra = ["--set=model.dtype=float32"] if seed else []
    r = _run("compare.py", f"--seed={seed}", f"--workdir={tmp_path / f's{seed}'}",
             *common, *extra, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((tmp_path / f"s{seed}" / "results.json").read_text())
    assert set(results) == {"rstg_time", "conv3d"}
    for entry in results.values():
      assert {"test_top1", "test_pair_top1", "steps", "train_seconds", "params"} <= set(entry)
      assert entry["steps"] == 4 and entry["seed"] == seed and entry["params"] > 0
      assert 0.0 <= entry["test_pair_top1"] <= 1.0
      assert "sync3_cpu" in entry["setup"]
      assert entry["setup"].endswith(", --set model.dtype=float32") == bool(seed)
    # Time-only RSTG keeps its LSTMs but loses the space stage: fewer parameters
    # than the full graph would have, more than none.
    assert results["rstg_time"]["params"] != results["conv3d"]["params"]
  # Same data, another seed: other weights, so (almost surely) other losses.
  first = json.loads((tmp_path / "s0" / "results.json").read_text())
  second = json.loads((tmp_path / "s1" / "results.json").read_text())
  assert first["conv3d"]["test_loss"] != second["conv3d"]["test_loss"]

  r = _run("aggregate.py", f"--workdirs={tmp_path / 's0'},{tmp_path / 's1'}",
           f"--out={tmp_path / 'agg'}", cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  summary = json.loads((tmp_path / "agg" / "seeds.json").read_text())
  pair = summary["conv3d"]["test_pair_top1"]
  values = [first["conv3d"]["test_pair_top1"], second["conv3d"]["test_pair_top1"]]
  assert pair["values"] == values and abs(pair["mean"] - sum(values) / 2) < 1e-12
  assert summary["rstg_time"]["seeds"] == [0, 1]
  assert "| conv3d | 2 |" in (tmp_path / "agg" / "seeds.md").read_text()
  assert (tmp_path / "agg" / "seeds.png").stat().st_size > 10_000

  # --models picks and orders the rows; a model in no workdir is one clear line.
  r = _run("aggregate.py", f"--workdirs={tmp_path / 's0'},{tmp_path / 's1'}",
           f"--out={tmp_path / 'one'}", "--models=conv3d", cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  assert set(json.loads((tmp_path / "one" / "seeds.json").read_text())) == {"conv3d"}
  r = _run("aggregate.py", f"--workdirs={tmp_path / 's0'}", f"--out={tmp_path / 'x'}",
           "--models=conv3d,rstg_nope", cwd=tmp_path)
  assert r.returncode != 0
  assert "--models: ['rstg_nope'] in none of the workdirs" in r.stderr.strip().splitlines()[-1]

  # The same run given twice would be counted twice: refused, naming both files.
  r = _run("aggregate.py", f"--workdirs={tmp_path / 's0'},{tmp_path / 's0'}",
           f"--out={tmp_path / 'x'}", cwd=tmp_path)
  assert r.returncode != 0
  last = r.stderr.strip().splitlines()[-1]
  assert "seed 0 is also in" in last and "s0/results.json" in last

  (tmp_path / "broken").mkdir()
  (tmp_path / "broken" / "results.json").write_text("{not json")
  r = _run("aggregate.py", f"--workdirs={tmp_path / 'broken'}", f"--out={tmp_path / 'x'}",
           cwd=tmp_path)
  assert r.returncode != 0
  assert "broken/results.json: not valid JSON" in r.stderr.strip().splitlines()[-1]
