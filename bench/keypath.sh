#!/usr/bin/env bash
# KMS calls per task and RunTask-to-RUNNING, this build against a baseline
# build in the same run (e.g. the commit before the key-path redesign):
# each round runs a block of tasks on one binary, then on the other, in
# alternating order, on a fresh data dir each; the audit trail is read for
# every task's KMS calls. Run as root after `cargo build --release -p ferry`.
# Usage: bench/keypath.sh --baseline PATH/TO/OLD/ferry [--rounds 6] [--tasks 10]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_BIN=${FERRY_BIN:-$PWD/target/release/ferry}
exec python3 bench/keypath_bench.py "$@"
