"""experiments/gpu_bench.sh runs end to end on CPU at tiny sizes (--tiny)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_peak_lookup():
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  try:
    import gpu_bench  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.pop(0)
  assert gpu_bench.bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
  assert gpu_bench.bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
  assert gpu_bench.bf16_peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
  assert gpu_bench.bf16_peak_tflops("NVIDIA L4") == 121.0
  assert gpu_bench.bf16_peak_tflops("cpu") is None


@pytest.mark.slow
def test_gpu_bench_tiny_runs_end_to_end():
  # One model config and one remat setting keep it to a few minutes on a loaded CPU; the
  # other three runs are the same code path with other flags.
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one CPU device, as a GPU run has one GPU
  proc = subprocess.run(
      ["bash", os.path.join(ROOT, "experiments", "gpu_bench.sh"), "--tiny",
       "--configs=smt_i3d_rstg_final", "--remat_modes=True"],
      capture_output=True, text=True, env=env, timeout=1500, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["errors"] == []
  assert result["graph"]["clips_per_s"] > 0
  (row,) = result["models"]
  assert row["config"] == "smt_i3d_rstg_final" and row["remat"] is True
  assert row["clips_per_s"] > 0 and row["temp_gib"] is not None
  assert result["input_keeps_up"] in (True, False)


def _run_input_part(*flags):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "gpu_bench.py"),
       "--skip=graph,models", *flags],
      capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"),
      timeout=300, check=False)


def test_input_rate_from_a_carried_measurement(tmp_path):
  # A GPU host without TensorFlow takes the per-core input rate measured where
  # gpu_prepare.sh ran, times its own cores, and says so.
  measured = {"config": "smt_i3d_rstg_final", "clip": [32, 224, 224], "cpu": "Test CPU 9000",
              "cores": 2, "load_1min": 0.3, "train_input": {"2": 40.0},
              "train_input_clips_per_s_per_core": 20.0}
  path = tmp_path / "bench_input.json"
  path.write_text(json.dumps(measured))
  out = tmp_path / "result.json"
  proc = _run_input_part(f"--input_json={path}", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["errors"] == []
  assert result["input_clips_per_s"] == 20.0 * os.cpu_count()
  assert "Test CPU 9000" in result["input_source"] and str(path) in result["input_source"]
  assert result["input_keeps_up"] is None  # no model step was timed to compare with


def test_unusable_input_measurement_names_the_file(tmp_path):
  path = tmp_path / "bench_input.json"
  path.write_text(json.dumps({"cores": 2}))
  proc = _run_input_part(f"--input_json={path}")
  assert proc.returncode == 1
  assert f"{path}: no field 'train_input_clips_per_s_per_core'" in proc.stderr
  proc = _run_input_part(f"--input_json={tmp_path / 'missing.json'}")
  assert proc.returncode == 1 and "missing.json: cannot read" in proc.stderr


def test_parts_past_the_budget_are_reported_not_run(tmp_path):
  out = tmp_path / "result.json"
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "gpu_bench.py"), "--tiny",
       "--budget_s=1", "--skip=input", "--configs=smt_i3d_rstg_final", "--remat_modes=True",
       f"--out={out}"],
      capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"),
      timeout=300, check=False)
  assert proc.returncode == 1
  result = json.loads(out.read_text())
  assert result["graph"] is None and result["models"] == []
  assert len(result["errors"]) == 2
  assert all("time budget (--budget_s) is spent" in e for e in result["errors"])


def test_carried_wheels_install_offline_into_the_run(tmp_path):
  # gpu_bench.sh installs whatever wheels gpu_prepare.sh carried, without an index: here a
  # one-module wheel built on the spot stands in for ml_collections and clu.
  src = tmp_path / "probe"
  (src / "rstg_carry_probe").mkdir(parents=True)
  (src / "rstg_carry_probe" / "__init__.py").write_text("VERSION = 1\n")
  (src / "setup.py").write_text(
      "import setuptools\nsetuptools.setup(name='rstg_carry_probe', version='1.0', "
      "packages=['rstg_carry_probe'])\n")
  carry = tmp_path / "carry"
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--no-build-isolation", "--no-index", "-w", str(carry / "wheels"), str(src)],
                 check=True, capture_output=True, timeout=300)
  # The python the script runs: first checks that the benchmark would import the carried
  # package and this tree's packages (under their installed names), then runs it.
  python = tmp_path / "python"
  python.write_text(
      "#!/usr/bin/env bash\n"
      'if [ "$1" = experiments/gpu_bench.py ]; then\n'
      f'  "{sys.executable}" -c "import os, rstg_carry_probe, rstg_jax, rstg_configs, '
      'rstg_datasets; print(\'imports: \' + os.path.realpath(rstg_configs.__file__))"'
      " || exit 9\n"
      "fi\n"
      f'exec "{sys.executable}" "$@"\n')
  python.chmod(0o755)
  out = tmp_path / "result.json"
  proc = subprocess.run(
      ["bash", os.path.join(ROOT, "experiments", "gpu_bench.sh"), "--skip=graph,models,input",
       f"--out={out}"],
      capture_output=True, text=True, timeout=300, check=False,
      env=dict(os.environ, JAX_PLATFORMS="cpu", GPU_CARRY=str(carry), PYTHON=str(python)))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"installing 1 carried wheel(s) from {carry}/wheels" in proc.stdout
  # this tree's configs (through the temporary folder of links), whatever is installed
  assert f"imports: {os.path.realpath(ROOT)}/configs/__init__.py" in proc.stdout
  result = json.loads(out.read_text())
  assert result["errors"] == [] and result["versions"]["jax"]
  # TensorFlow is found under whichever name it is installed (here tensorflow-cpu)
  has_tf = importlib.util.find_spec("tensorflow") is not None
  assert (result["versions"]["tensorflow"] is not None) == has_tf
