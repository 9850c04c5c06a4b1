"""One prepared GPU benchmark (run by experiments/gpu_bench.sh): graph, full models, input.

  bash experiments/gpu_bench.sh           # on one GPU, within ~8 minutes
  bash experiments/gpu_bench.sh --tiny    # CPU smoke test of the same script (tiny sizes)

1. the graph benchmark (experiments/bench_graph.py --json: paper shape, f32, default scan);
2. the train steps of smt_i3d_rstg_final and smt_i3d_rstg_res3_res4 at 32x224^2, batch 8,
   bfloat16, without and with remat (experiments/bench_models.py, one process each, so
   the peak device memory is that run's): clips/s, MFU against the card's dense bf16
   peak (looked up from jax.devices()[0].device_kind), peak device memory, XLA temp;
3. the training input (experiments/bench_input.py, all cores) against the fastest of
   those steps: does the input pipeline keep up? The input pipeline needs TensorFlow;
   on a host without it (a CUDA image with no internet, where TensorFlow is too large
   to carry), the per-core rate measured where experiments/gpu_prepare.sh ran
   (.gpu_carry/bench_input.json, or --input_json) is scaled to this host's cores and
   reported as such.

Each part runs in its own subprocess with a time limit, and all of them within
--budget_s; a part that fails or runs out of time is reported and the rest still run.
Prints one table and a final JSON line (also written to --out).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# What experiments/gpu_prepare.sh measured where TensorFlow is installed ($GPU_CARRY).
CARRIED_INPUT = os.path.join(
    os.path.dirname(HERE), os.environ.get("GPU_CARRY", ".gpu_carry"), "bench_input.json")

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a substring of device_kind.
# Order matters: the first match wins.
BF16_PEAK_TFLOPS = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("L4", 121.0), ("A6000", 155.0), ("A10", 125.0), ("RTX 4090", 165.0),
    ("RTX 3090", 71.0), ("V100", 125.0), ("T4", 65.0),  # V100/T4: fp16, no bf16 units
)


def bf16_peak_tflops(device_kind: str) -> float | None:
  for key, peak in BF16_PEAK_TFLOPS:
    if key.lower() in device_kind.lower():
      return peak
  return None


def run_json(args: list[str], timeout: float) -> tuple[object | None, str]:
  """Runs a python script; returns (the JSON at the end of its stdout, error text)."""
  if timeout < 5:
    return None, f"not run, the time budget (--budget_s) is spent: {' '.join(args)}"
  cmd = [sys.executable] + args
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
  except subprocess.TimeoutExpired:
    return None, f"timed out after {timeout:.0f} s: {' '.join(args)}"
  took = time.perf_counter() - t0
  out = proc.stdout
  print(f"  [{took:6.1f} s] {' '.join(args)}", flush=True)
  if proc.returncode != 0:
    return None, f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"
  # The JSON is the last line (bench_graph, bench_input) or the last {...} block.
  start = out.rfind("\n{")
  start = 0 if start < 0 and out.startswith("{") else start + 1
  try:
    return json.loads(out[start:]), ""
  except json.JSONDecodeError:
    for line in reversed(out.strip().splitlines()):
      try:
        return json.loads(line), ""
      except json.JSONDecodeError:
        continue
  return None, f"no JSON in the output of {' '.join(args)}: {out[-500:]}"


def _version(*dists: str) -> str | None:
  """The installed version of the first of `dists` present, else None."""
  for dist in dists:
    try:
      return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      continue
  return None


def package_versions() -> dict[str, str | None]:
  """Installed versions of what the benchmarks run on (None: absent), for the report."""
  out = {name: _version(name) for name in ("jax", "jaxlib", "flax", "optax",
                                           "orbax-checkpoint", "ml_collections", "clu")}
  # setup.py installs TensorFlow as tensorflow-cpu; a CUDA image would have tensorflow.
  out["tensorflow"] = _version("tensorflow", "tensorflow-cpu")
  out["numpy"] = _version("numpy")
  return out


def load_input_json(path: str) -> tuple[dict | None, str]:
  """A bench_input.py --json result from a file; (None, why) when it is unusable."""
  try:
    with open(path, encoding="utf-8") as f:
      r = json.load(f)
    rate = float(r["train_input_clips_per_s_per_core"])
  except OSError as e:
    return None, f"{path}: cannot read ({e.strerror})"
  except (ValueError, TypeError) as e:
    return None, f"{path}: not a bench_input.py --json result ({e})"
  except KeyError as e:
    return None, f"{path}: no field {e} (expected a bench_input.py --json result)"
  if not rate > 0:
    return None, f"{path}: train_input_clips_per_s_per_core is {rate}, expected > 0"
  return r, ""


def measure_or_load_input(args, timeout: float) -> tuple[dict | None, str, str, float]:
  """(bench_input result, error, where it comes from, training-input clips/s on this
  host) for the training-input part."""
  path = args.input_json
  if (path is None and not args.save_input
      and importlib.util.find_spec("tensorflow") is None):
    if not os.path.exists(CARRIED_INPUT):
      return None, ("no TensorFlow here, which the input pipeline needs, and no "
                    f"{CARRIED_INPUT}: run experiments/gpu_prepare.sh where the project "
                    "is installed and bring its folder along"), "", 0.0
    path = CARRIED_INPUT
  if path is not None:
    r, err = load_input_json(path)
    if err:
      return None, err, "", 0.0
    where = (f"{r.get('config', '?')} {r.get('clip', '?')} on {r.get('cpu') or 'a CPU'}, "
             f"{r.get('cores', '?')} cores, load {r.get('load_1min', '?')}")
    # A per-core rate from elsewhere, scaled to this host's cores.
    return (r, "", f"per-core rate measured elsewhere: {where} ({path}), times this host's "
            "cores", r["train_input_clips_per_s_per_core"] * (os.cpu_count() or 1))
  input_args = [os.path.join(HERE, "bench_input.py"), "--json", "--step_reps=0"]
  if args.tiny:
    input_args += ["--config=smt_i3d_rstg_final:tiny", "--videos=8", "--frames=12",
                   "--clips=4", "--eval_videos=1", "--threads=1"]
  else:
    input_args += ["--config=smt_i3d_rstg_final", f"--threads={os.cpu_count()}",
                   "--videos=16", "--clips=32", "--eval_videos=1"]
  r, err = run_json(input_args, timeout)
  if err:
    return None, err, "", 0.0
  if args.save_input:
    with open(args.save_input, "w", encoding="utf-8") as f:
      json.dump(r, f)
  return r, "", "measured here", max(r["train_input"].values())


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tiny", action="store_true", help="CPU smoke test at tiny sizes")
  parser.add_argument("--steps", type=int, default=None, help="timed train steps per run")
  parser.add_argument("--skip", default="", help="comma list of parts to skip: graph,models,input")
  parser.add_argument("--configs", default="smt_i3d_rstg_final,smt_i3d_rstg_res3_res4")
  parser.add_argument("--remat_modes", default="False,True",
                      help="remat settings of the model runs (comma list)")
  parser.add_argument("--budget_s", type=float, default=None,
                      help="wall-clock budget of all parts (default 470 s, --tiny 1800 s)")
  parser.add_argument("--input_json", default=None,
                      help="bench_input.py --json output measured elsewhere, used instead of "
                           "measuring here (default where TensorFlow is missing: "
                           ".gpu_carry/bench_input.json)")
  parser.add_argument("--out", default=None, help="also write the result JSON to this file")
  parser.add_argument("--save_input", default=None,
                      help="measure the training input here (TensorFlow needed) and write "
                           "bench_input.py's result to this file (experiments/gpu_prepare.sh)")
  args = parser.parse_args()
  skip = set(filter(None, args.skip.split(",")))
  t_start = time.perf_counter()
  budget = args.budget_s or (1800.0 if args.tiny else 470.0)

  def time_limit(part_limit: float) -> float:
    # Each part gets its own limit, cut to what is left of the budget, so the table and
    # the JSON are printed before a caller's own time limit ends the whole run.
    return max(0.0, min(part_limit, budget - (time.perf_counter() - t_start) - 5.0))

  import jax  # pylint: disable=g-import-not-at-top
  kind = jax.devices()[0].device_kind
  backend = jax.default_backend()
  peak = bf16_peak_tflops(kind)
  print(f"device: {kind} ({backend}, {len(jax.devices())} device(s), {os.cpu_count()} CPUs);"
        f" dense bf16 peak: {peak if peak else 'unknown'} TFLOP/s", flush=True)
  del jax  # the parts run in subprocesses, each owning the device in turn
  versions = package_versions()
  print("python " + sys.version.split()[0] + "; "
        + ", ".join(f"{k} {v or 'absent'}" for k, v in versions.items()), flush=True)
  result = {"device": kind, "backend": backend, "bf16_peak_tflops": peak, "tiny": args.tiny,
            "python": sys.version.split()[0], "versions": versions}
  errors = []

  if "graph" not in skip:
    graph_args = [os.path.join(HERE, "bench_graph.py"), "--json"]
    if args.tiny:
      graph_args += ["--shape=tiny", "--repeats=1", "--matmul_n=512"]
    r, err = run_json(graph_args, time_limit(300 if args.tiny else 150))
    result["graph"] = r
    if err:
      errors.append(("graph", err))
    else:
      print(f"graph {r['shape']} B={r['batch']} T={r['frames']} scan={r['scan']} f32: "
            f"{r['clips_per_s']:.2f} clips/s, {r['gflops_per_s']:.0f} GFLOP/s, ratio to a "
            f"same-run f32 matmul {r['ratio']:.2f}", flush=True)

  models = []
  if "models" not in skip:
    if args.tiny:
      size = ["--variant=tiny", "--frames=8", "--image_size=64", "--batch_size=1",
              f"--steps={args.steps or 1}", "--dtype=bfloat16"]
    else:
      size = ["--full", "--batch_size=8", f"--steps={args.steps or 5}", "--dtype=bfloat16"]
    for config in args.configs.split(","):
      for remat in [m.strip() == "True" for m in args.remat_modes.split(",")]:
        r, err = run_json([os.path.join(HERE, "bench_models.py"), "--json",
                           f"--configs={config}", f"--remat={remat}",
                           f"--config_dir={os.path.join(os.path.dirname(HERE), 'configs')}"]
                          + size,
                          time_limit(400 if args.tiny else 200))
        if err:
          errors.append((f"{config} remat={remat}", err))
          continue
        row = r["rows"][0]
        step_s = row["step_ms"] / 1e3
        row["mfu"] = (round(row["gflop_per_step"] * 1e9 / step_s / (peak * 1e12), 3)
                      if peak else None)
        models.append(row)
    result["models"] = models
    print("| config | remat | clips/s | TFLOP/s | MFU (bf16 peak) | peak mem GiB | XLA temp GiB |"
          " compile s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in models:
      print(f"| {row['config']} | {row['remat']} | {row['clips_per_s']} | "
            f"{row['achieved_gflops'] / 1e3:.1f} | {row['mfu']} | {row['peak_gib']} | "
            f"{row['temp_gib']} | {row['compile_s']} |", flush=True)

  if "input" not in skip:
    r, err, source, input_rate = measure_or_load_input(
        args, time_limit(300 if args.tiny else 150))
    result["input"] = r
    if err:
      errors.append(("input", err))
    else:
      cores = os.cpu_count() or 1
      need = max((row["clips_per_s"] for row in models), default=None)
      keeps_up = None if need is None else input_rate >= need
      result.update(input_source=source, input_clips_per_s=round(input_rate, 2),
                    input_keeps_up=keeps_up)
      print(f"training input ({source}): {input_rate:.1f} clips/s on {cores} cores "
            f"({r['train_input_clips_per_s_per_core']:.2f} per core); fastest step "
            f"{need} clips/s -> keeps up: {keeps_up}", flush=True)

  result["errors"] = [f"{part}: {err[-300:]}" for part, err in errors]
  for part, err in errors:
    print(f"FAILED {part}: {err}", file=sys.stderr)
  result["seconds"] = round(time.perf_counter() - t_start, 1)
  print(json.dumps(result))
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
  sys.exit(1 if errors else 0)


if __name__ == "__main__":
  main()
