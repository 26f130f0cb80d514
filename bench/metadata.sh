#!/usr/bin/env bash
# The task metadata endpoint under load, from inside a task's network
# namespace: requests/s and p50/p99 of keep-alive GETs of the container
# document, /task, /task/stats, against a baseline in the same run (the same
# server's 404 for an unknown path: routing only, no document built). Run as
# root (under flock /tmp/ferry-root-tests.lock) after
# `cargo build --release -p ferry` and
# `cargo build --release -p ferry-metadata --example metadata_load`.
# Usage: bench/metadata.sh [--seconds 10] [--connections 4]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_BIN=${FERRY_BIN:-$PWD/target/release/ferry}
export LOAD_BIN=${LOAD_BIN:-$PWD/target/release/examples/metadata_load}
exec python3 bench/metadata_bench.py "$@"
