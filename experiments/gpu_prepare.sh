#!/usr/bin/env bash
# Prepares, on the CPU machine with the project installed, what a GPU host without
# internet needs to run experiments/gpu_bench.sh, in one ignored folder, .gpu_carry/:
#   .gpu_carry/wheels/           wheels of the packages its image lacks (for its Python)
#   .gpu_carry/bench_input.json  the Something-Something input measured here, used there
#                                only when that host has no TensorFlow (too large to carry)
#
#   bash experiments/gpu_prepare.sh                 # wheels + input measurement (~30 s)
#   bash experiments/gpu_prepare.sh --no-input      # wheels only
#   GPU_PYTHON=3.12 GPU_WHEELS="ml_collections clu" GPU_CARRY=DIR bash experiments/gpu_prepare.sh
#
# Then, on the GPU host, from a copy of this tree that includes .gpu_carry/:
#   bash experiments/gpu_bench.sh --out=RESULT.json
# gpu_bench.sh installs the carried wheels into a temporary folder (no index, no
# network) and runs the benchmarks from this tree's own code.
#
# The default GPU_WHEELS are what the graph and model benchmarks import beyond JAX, Flax,
# Optax, Orbax, chex, absl and einops, which CUDA images with JAX usually hold. A GPU
# host with internet needs none of this: `pip install -e .` there instead.
set -euo pipefail
cd "$(dirname "$0")/.."
measure_input=1
for arg in "$@"; do
  case "$arg" in
    --no-input) measure_input=0 ;;
    *) echo "gpu_prepare.sh: unknown argument '$arg' (known: --no-input)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-python3}"
py_version="${GPU_PYTHON:-3.12}"
packages="${GPU_WHEELS:-ml_collections clu}"
carry="${GPU_CARRY:-.gpu_carry}"

# Pin each wheel to the version CI tests (constraints.txt), where it is listed there.
specs=()
for name in $packages; do
  pattern="^$(echo "$name" | sed 's/[-_.]/[-_.]/g')=="
  pin="$(grep -i -m1 "$pattern" constraints.txt || true)"
  specs+=("${pin:-$name}")
done

rm -rf "$carry/wheels"
mkdir -p "$carry/wheels"
echo "downloading for Python $py_version (manylinux x86-64): ${specs[*]}"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$py_version" \
  --implementation cp "${platforms[@]}" -d "$carry/wheels" "${specs[@]}"
ls -l "$carry/wheels"

if [ "$measure_input" = 1 ]; then
  source experiments/tree_site.sh
  echo "measuring the training input on this machine ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
  # gpu_bench.py's own input measurement, so the carried rate is what it would measure.
  "$PY" experiments/gpu_bench.py --skip=graph,models --save_input="$carry/bench_input.json"
fi
du -sh "$carry"
if git rev-parse --git-dir >/dev/null 2>&1 && ! git check-ignore -q "$carry"; then
  echo "warning: $carry is not ignored by git; a device copy may only carry ignored paths" >&2
fi
echo "ready: copy this tree with $carry/ to the GPU host and run bash experiments/gpu_bench.sh"
