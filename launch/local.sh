#!/usr/bin/env bash
# N local processes of one rrd_jax.cli.train job (multi-process testing on one machine, or one process
# per GPU on a single node), coordinated over 127.0.0.1.
#
#   launch/local.sh N [-- ] <rrd_jax.cli.train arguments>
#   e.g. launch/local.sh 2 -- --config configs/libero_rrd.py --workdir runs/two_procs
#
# Environment: PYTHON (default: the active virtualenv's python, else this checkout's .venv/bin/python
# when it exists, else python from PATH; the one used is printed), RRD_JAX_PORT (coordinator port, default 12355),
# RRD_JAX_GPUS_PER_PROCESS (if set, process i sees GPUs [i*k, (i+1)*k) via CUDA_VISIBLE_DEVICES).
# All processes share this terminal; only process 0 prints progress and writes metrics.
set -euo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ || "$1" -lt 1 ]]; then
  echo "usage: launch/local.sh N [--] <rrd_jax.cli.train arguments>" >&2
  exit 2
fi
num_processes="$1"
shift
if [[ "${1:-}" == "--" ]]; then
  shift
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PYTHON:-}" ]]; then
  python="$PYTHON"
elif [[ -z "${VIRTUAL_ENV:-}" && -x "$repo/.venv/bin/python" ]]; then
  python="$repo/.venv/bin/python"
else
  python="python"
fi
echo "launch/local.sh: $num_processes processes with $(command -v "$python" || echo "$python")" >&2
port="${RRD_JAX_PORT:-12355}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
}
trap cleanup INT TERM

for ((i = 0; i < num_processes; i++)); do
  if [[ -n "${RRD_JAX_GPUS_PER_PROCESS:-}" ]]; then
    k="$RRD_JAX_GPUS_PER_PROCESS"
    export CUDA_VISIBLE_DEVICES
    CUDA_VISIBLE_DEVICES="$(seq -s, $((i * k)) $((i * k + k - 1)))"
  fi
  "$python" -m rrd_jax.cli.train --coordinator_address="127.0.0.1:${port}" \
    --num_processes="$num_processes" --process_id="$i" "$@" &
  pids+=("$!")
done

status=0
for pid in "${pids[@]}"; do
  if ! wait "$pid"; then
    status=1
    cleanup
  fi
done
exit "$status"
