#!/usr/bin/env bash
# One prepared GPU benchmark, within ~8 minutes on one GPU (see experiments/gpu_bench.py):
#   bash experiments/gpu_bench.sh          # graph, full models in bf16 +- remat, input
#   bash experiments/gpu_bench.sh --tiny   # CPU smoke test at tiny sizes
# Extra arguments go to gpu_bench.py (--steps=N, --skip=graph,models,input).
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Let each benchmark process allocate what it needs (peak memory is then the real one).
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
exec python experiments/gpu_bench.py "$@"
