#!/usr/bin/env bash
# RunTask-to-RUNNING with security groups against without, in one run: a
# task in the VPC's default group alone, next to a task in five groups of
# twenty rules each (CIDR and group sources) while other tasks in those
# groups run, alternating. Run as root after `cargo build --release -p
# ferry` (FERRY_BIN overrides the binary).
# Usage: bench/sg_start.sh [--tasks 30] [--members 10]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
use_ferry_bin
exec python3 bench/sg_start_bench.py "$@"
