#!/usr/bin/env bash
# Fleet mode (issue 19), in one run: DescribeTasks and RunTask requests/s
# through one API replica and through two sharing one PostgreSQL store, and
# RunTask-to-RUNNING p50/p90 on PostgreSQL against the embedded store.
# Starts its own PostgreSQL cluster (tests/e2e/pg.py), two replicas on it
# and a redb server, all on 127.0.0.1, and removes them at the end. Run as
# root after `cargo build --release -p ferry` (FERRY_BIN overrides the
# binary). Results: bench/results-fleet.md.
# Usage: bench/fleet.sh [--clients 8] [--rounds 3] [--describe-seconds 5] [--run-seconds 3]
#                       [--run-cap 250] [--tasks 15] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
use_ferry_bin
exec python3 bench/fleet_bench.py "$@"
