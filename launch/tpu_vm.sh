#!/usr/bin/env bash
# Run the same rrd_jax.cli.train command on every worker of a Cloud TPU VM slice.
#
#   launch/tpu_vm.sh TPU_NAME ZONE [--project P] -- <rrd_jax.cli.train arguments>
#   e.g. launch/tpu_vm.sh my-v4-32 us-central2-b -- --config configs/libero_rrd.py \
#          --workdir gs://bucket/runs/v4 --config.data.dataset_dir=/data/libero_10_no_noops/1.0.0
#
# Each worker must have this repository at REPO_DIR (default: ~/rrd_jax) with its environment at
# REPO_DIR/.venv. jax.distributed.initialize() auto-detects the slice's coordinator and process ids
# on TPU VMs, so no coordinator flags are passed.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: launch/tpu_vm.sh TPU_NAME ZONE [--project P] -- <rrd_jax.cli.train arguments>" >&2
  exit 2
fi
tpu_name="$1"
zone="$2"
shift 2
gcloud_args=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  gcloud_args+=("$1")
  shift
done
if [[ "${1:-}" == "--" ]]; then
  shift
fi
repo_dir="${REPO_DIR:-~/rrd_jax}"
train_args="$(printf '%q ' "$@")"

gcloud compute tpus tpu-vm ssh "$tpu_name" --zone "$zone" "${gcloud_args[@]}" --worker=all \
  --command "cd ${repo_dir} && .venv/bin/python -m rrd_jax.cli.train ${train_args}"
