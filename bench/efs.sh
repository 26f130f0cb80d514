#!/usr/bin/env bash
# EFS benchmark: fio inside a task on its persistent (EFS) file system vs on
# its ephemeral storage, same task, same run, ratio reported. Run as root.
# Usage:
#   cargo build --release -p ferry
#   FERRY_BIN=$PWD/target/release/ferry bench/efs.sh [ROUNDS] | tee bench/results-efs.md
set -euo pipefail
cd "$(dirname "$0")/.."
: "${FERRY_BIN:=$PWD/target/release/ferry}"
export FERRY_BIN
[ -x "$FERRY_BIN" ] || { echo "build first: cargo build --release -p ferry" >&2; exit 1; }
command -v fio >/dev/null || { echo "missing fio on the host (it is copied into the image)" >&2; exit 1; }
exec python3 bench/efs_bench.py "${1:-3}"
