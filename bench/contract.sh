#!/usr/bin/env bash
# RunTask-to-RUNNING for a task with the full task contract (an init
# container that must succeed, an app with a CMD-SHELL health check, a
# non-essential sidecar waiting for the app to be HEALTHY, awslogs)
# against the single-container task, alternating, in the same run.
# Run as root after `cargo build --release -p ferry`.
# Usage: bench/contract.sh [--tasks 20]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_BIN=${FERRY_BIN:-$PWD/target/release/ferry}
exec python3 bench/contract_bench.py "$@"
