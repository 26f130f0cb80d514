#!/usr/bin/env bash
# Task start-up latency (RunTask -> RUNNING through the API, per-phase
# costs, ten at once) and fio inside a task, encrypted (platform 1.4.0)
# against unencrypted (1.3.0) in the same run. Run as root after
# `cargo build --release -p ferry`.
# Usage: bench/task.sh [--tasks 50] [--fio-rounds 6] [--fio-size 512m] [--fio-seconds 5]
#        [--fio-jobs seqread,...] [--storage disk|ram]   (--tasks 0: fio only)
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_BIN=${FERRY_BIN:-$PWD/target/release/ferry}
exec python3 bench/task_bench.py "$@"
