#!/usr/bin/env bash
# Restart with running tasks: seconds from a new `ferry server`'s start
# until N running tasks are re-adopted (RUNNING in DescribeTasks, a new log
# line from each since the restart, each task's metadata endpoint
# answering), next to a server start with no tasks, in the same run. Run
# as root after `cargo build -p ferry` (FERRY_BIN overrides the binary;
# release by default when it exists).
# Usage: bench/restart.sh [--tasks 20] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
use_ferry_bin
exec python3 bench/restart_bench.py "$@"
