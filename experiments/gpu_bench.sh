#!/usr/bin/env bash
# One prepared GPU benchmark, within ~8 minutes on one GPU (see experiments/gpu_bench.py):
#   bash experiments/gpu_bench.sh          # graph, full models in bf16 +- remat, input
#   bash experiments/gpu_bench.sh --tiny   # CPU smoke test at tiny sizes
# Extra arguments go to gpu_bench.py (--steps=N, --skip=graph,models,input, --out=FILE).
#
# On a host without internet, first run experiments/gpu_prepare.sh where pip works and
# bring .gpu_carry/ (or $GPU_CARRY) along: its wheels are installed here into a temporary
# folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Let each benchmark process allocate what it needs (peak memory is then the real one).
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"

source experiments/tree_site.sh
export GPU_CARRY="${GPU_CARRY:-.gpu_carry}"
shopt -s nullglob
wheels=("$GPU_CARRY"/wheels/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  echo "installing ${#wheels[@]} carried wheel(s) from $GPU_CARRY/wheels"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$tree_site" \
    "${wheels[@]}"
fi
"$PY" experiments/gpu_bench.py "$@"
