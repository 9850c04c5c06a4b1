"""experiments/gpu_bench.sh runs end to end on CPU at tiny sizes (--tiny)."""
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
