#!/usr/bin/env bash
# RunTask-to-RUNNING with security groups against without, in one run: a
# task in the VPC's default group alone, next to a task in five groups of
# twenty rules each (CIDR and group sources) while other tasks in those
# groups run, alternating. Run as root after `cargo build --release -p
# ferry` (FERRY_BIN overrides the binary).
# Usage: bench/sg_start.sh [--tasks 30] [--members 10]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FERRY_BIN:-}" ]; then
  FERRY_BIN=$PWD/target/release/ferry
  [ -x "$FERRY_BIN" ] || FERRY_BIN=$PWD/target/debug/ferry
fi
export FERRY_BIN
exec python3 bench/sg_start_bench.py "$@"
