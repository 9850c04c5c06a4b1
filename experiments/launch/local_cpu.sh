#!/usr/bin/env bash
# A multi-process JAX job on this machine: N CPU processes with K fake CPU
# devices each, connected by jax.distributed over loopback (gloo collectives).
# The same code paths as a multi-host GPU/TPU job, for testing on a laptop.
#
#   experiments/launch/local_cpu.sh -n 2 -k 2 -- \
#       --config=configs/syncmnist_rstg.py:tiny --workdir=runs/mp2
#
# Options (before `--`; everything after it goes to the program):
#   -n N        processes (default 2)
#   -k K        fake CPU devices per process (default 2); global devices = N*K
#   -p PROGRAM  what each process runs (default "python -m rstg_jax.main")
#   -l DIR      also write process i's output to DIR/process_<i>.log
#   -t SECONDS  kill the whole job after this long (default: no limit)
#   -g SECONDS  grace period between SIGTERM and SIGKILL when stopping (default 30)
#
# Each process gets JAX_COORDINATOR_ADDRESS=127.0.0.1:<free port>,
# JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=i (read by rstg_jax.runtime.distributed),
# JAX_PLATFORMS=cpu and XLA_FLAGS=--xla_force_host_platform_device_count=K.
# Output lines are prefixed with [p<i>].
#
# Exit status: 0 if every process exits 0; otherwise the first non-zero status
# (124 on timeout). When one process fails the others are stopped (SIGTERM,
# then SIGKILL after the grace period) instead of hanging in a collective.
# SIGTERM or Ctrl-C to this script is forwarded to every process: the training
# job then saves a checkpoint and exits 0 (a simulated pre-emption); relaunch
# the same command to resume.
set -euo pipefail

num_procs=2
devices_per_proc=2
program="python -m rstg_jax.main"
log_dir=""
time_limit=0
grace=30

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

while getopts "n:k:p:l:t:g:h" opt; do
  case "$opt" in
    n) num_procs="$OPTARG" ;;
    k) devices_per_proc="$OPTARG" ;;
    p) program="$OPTARG" ;;
    l) log_dir="$OPTARG" ;;
    t) time_limit="$OPTARG" ;;
    g) grace="$OPTARG" ;;
    h) usage 0 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
for v in num_procs devices_per_proc time_limit grace; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "local_cpu.sh: $v='${!v}' is not a number" >&2; exit 2; }
done
(( num_procs >= 1 && devices_per_proc >= 1 )) || { echo "local_cpu.sh: -n and -k must be >= 1" >&2; exit 2; }
[[ -n "$log_dir" ]] && mkdir -p "$log_dir"

# A free loopback port: bind port 0 and let the kernel choose.
port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

pids=()
statuses=()

stop_all() {  # $1: signal for the first round
  local sig="$1" pid deadline
  for pid in "${pids[@]}"; do kill -s "$sig" "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + grace))
  while (( SECONDS < deadline )); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    (( alive )) || return 0
    sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -s KILL "$pid" 2>/dev/null || true; done
}

forwarded=0
# shellcheck disable=SC2329  # invoked by the trap below
on_signal() {
  forwarded=1
  echo "local_cpu.sh: forwarding SIGTERM to ${#pids[@]} processes" >&2
  for pid in "${pids[@]}"; do kill -s TERM "$pid" 2>/dev/null || true; done
}
trap on_signal TERM INT
trap 'for pid in "${pids[@]}"; do kill -s KILL "$pid" 2>/dev/null || true; done' EXIT

echo "local_cpu.sh: $num_procs processes x $devices_per_proc CPU devices, coordinator 127.0.0.1:$port" >&2
for ((i = 0; i < num_procs; i++)); do
  log="/dev/null"
  [[ -n "$log_dir" ]] && log="$log_dir/process_$i.log"
  # shellcheck disable=SC2086  # $program is a command line on purpose
  env JAX_COORDINATOR_ADDRESS="127.0.0.1:$port" JAX_NUM_PROCESSES="$num_procs" \
      JAX_PROCESS_ID="$i" JAX_PLATFORMS=cpu \
      XLA_FLAGS="--xla_force_host_platform_device_count=$devices_per_proc" \
      $program "$@" \
      > >(tee "$log" | sed -u "s/^/[p$i] /") 2>&1 &
  pids+=("$!")
  statuses+=("")
done

first_failure=0
remaining=$num_procs
start=$SECONDS
while (( remaining > 0 )); do
  for i in "${!pids[@]}"; do
    [[ -n "${statuses[$i]}" ]] && continue
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      rc=0; wait "${pids[$i]}" || rc=$?
      statuses[i]=$rc
      remaining=$((remaining - 1))
      if (( rc != 0 )); then
        echo "local_cpu.sh: process $i exited with status $rc" >&2
        if (( first_failure == 0 )); then
          first_failure=$rc
          (( remaining > 0 )) && stop_all TERM
        fi
      fi
    fi
  done
  if (( time_limit > 0 && SECONDS - start >= time_limit && remaining > 0 )); then
    echo "local_cpu.sh: time limit of ${time_limit}s reached, stopping the job" >&2
    first_failure=124
    stop_all TERM
  fi
  (( remaining > 0 )) && sleep 0.2
done
trap - EXIT
(( forwarded )) && echo "local_cpu.sh: job stopped by a signal; statuses ${statuses[*]}" >&2
exit "$first_failure"
