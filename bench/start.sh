#!/usr/bin/env bash
# Task start path: RunTask -> RUNNING p50 and the network phase for each
# task network driver (netlink, cni) and OCI runtime (runc, crun where it
# can run), servers side by side in one run, tasks alternating between
# them; then N tasks at once on each. Run as root after
# `cargo build --release -p ferry`.
# Usage: bench/start.sh [--tasks 30] [--burst 10,50]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/ferry}
exec python3 bench/start_bench.py "$@"
