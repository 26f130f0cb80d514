#!/usr/bin/env bash
# The web console's data endpoints at scale: a release `ferry server` with
# 500 tasks in its store (a few RUNNING) and a 100,000-record KMS audit
# trail; the task page (GET /console/api/task) against DescribeTasks of the
# same task in the same run, the whole trail paged 500 at a time with the
# server's RSS before and after, a task-filtered audit query. Run as root
# (tasks run). Results: bench/results-console.md. Driver: console_bench.py.
#
#   bench/console.sh [--tasks 500] [--running 3] [--records 100000] [--threads 8] [--samples 200]
#
# Builds target/release/ferry (or $CARGO_TARGET_DIR's) unless FERRY_BIN is
# set; holds /tmp/ferry-bench.lock so benchmarks do not overlap.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FERRY_BIN:-}" ]; then
  cargo build --release -q -p ferry --locked
  FERRY_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/ferry
fi
export FERRY_BIN
exec flock /tmp/ferry-bench.lock python3 bench/console_bench.py "$@"
