#!/usr/bin/env bash
# Training on a Cloud TPU VM slice (one or many hosts): the same command runs
# on every worker through `gcloud compute tpus tpu-vm ssh --worker=all`; JAX
# finds the other workers from the TPU metadata (rstg_jax/runtime/distributed.py calls
# jax.distributed.initialize() on a TPU VM). One process per host drives all
# of its TPU chips.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b experiments/launch/tpu_vm.sh setup
#   TPU_NAME=my-v4-32 ZONE=us-central2-b WORKDIR=/mnt/shared/runs/rstg \
#       experiments/launch/tpu_vm.sh run --config.num_train_steps=100000
#   TPU_NAME=my-v4-32 ZONE=us-central2-b experiments/launch/tpu_vm.sh logs
#   TPU_NAME=my-v4-32 ZONE=us-central2-b experiments/launch/tpu_vm.sh stop
#
# Commands:
#   setup   copy this checkout to ~/rstg_jax on every worker and install it
#           (jax[tpu] at the version of constraints.txt, then the package)
#   run     start training on every worker in the background (survives the
#           ssh session); extra arguments go to rstg_jax.main
#   logs    print the end of each worker's log
#   stop    SIGTERM to the training process on every worker: it saves a
#           checkpoint at a common step and exits; `run` again resumes
# Knobs (environment variables):
#   TPU_NAME   the TPU VM (required); ZONE (required); PROJECT (default: gcloud's)
#   CONFIG     experiment config (default configs/syncmnist_rstg.py)
#   WORKDIR    output folder on storage SHARED BY ALL WORKERS, e.g. a Filestore
#              NFS mount or a gcsfuse-mounted bucket (default ~/rstg_runs/rstg,
#              which is only right for a single-host TPU VM)
#   DATA_DIR   tfds data dir, shared too (default ~/tensorflow_datasets);
#              process 0 builds SyncMNIST there if absent
#   REMOTE_DIR where the code goes on the workers (default rstg_jax, in ~)
# The global batch (config.batch_size) must divide by the number of TPU cores.
set -euo pipefail

cmd="${1:-}"; shift || true
: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone, e.g. us-central2-b}"
CONFIG="${CONFIG:-configs/syncmnist_rstg.py}"
WORKDIR="${WORKDIR:-~/rstg_runs/rstg}"
DATA_DIR="${DATA_DIR:-~/tensorflow_datasets}"
REMOTE_DIR="${REMOTE_DIR:-rstg_jax}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
project=()
[[ -n "${PROJECT:-}" ]] && project=(--project="$PROJECT")

on_all_workers() {  # $1: a shell command run on every worker
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project[@]}" \
      --worker=all --command="$1"
}

quote_args() { local out="" a; for a in "$@"; do out+=" $(printf '%q' "$a")"; done; echo "$out"; }

case "$cmd" in
  setup)
    jax_version="$(sed -n 's/^jax==//p' "$repo/constraints.txt")"
    tar -C "$repo" --exclude=.git --exclude=runs --exclude='*.pyc' -czf /tmp/rstg_jax_src.tgz .
    gcloud compute tpus tpu-vm scp /tmp/rstg_jax_src.tgz "$TPU_NAME":~/ \
        --zone="$ZONE" "${project[@]}" --worker=all
    on_all_workers "set -e; mkdir -p ~/$REMOTE_DIR && tar -xzf ~/rstg_jax_src.tgz -C ~/$REMOTE_DIR \
      && cd ~/$REMOTE_DIR && python3 -m pip install -q -U pip \
      && python3 -m pip install -q 'jax[tpu]==${jax_version}' \
      && python3 -m pip install -q -e . -c constraints.txt \
      && python3 -c 'import jax; print(jax.process_index(), jax.local_devices())'"
    ;;
  run)
    args="$(quote_args --config="$CONFIG" --workdir="$WORKDIR" "$@")"
    # nohup + background: training outlives this ssh session; the pid file
    # lets `stop` signal exactly this process.
    on_all_workers "cd ~/$REMOTE_DIR && mkdir -p ~/rstg_logs && \
      TFDS_DATA_DIR=$DATA_DIR TF_CPP_MIN_LOG_LEVEL=2 nohup python3 -m rstg_jax.main \
      --distributed=on $args > ~/rstg_logs/train.log 2>&1 & echo \$! > ~/rstg_logs/train.pid; \
      echo \"worker \$(hostname): pid \$(cat ~/rstg_logs/train.pid), log ~/rstg_logs/train.log\""
    ;;
  logs)
    on_all_workers "echo == \$(hostname); tail -n 20 ~/rstg_logs/train.log"
    ;;
  stop)
    on_all_workers "kill -TERM \$(cat ~/rstg_logs/train.pid) && echo \"\$(hostname): SIGTERM sent\""
    ;;
  *)
    sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
