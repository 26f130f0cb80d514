#!/usr/bin/env bash
# Agent start-up latency (RunTask -> RUNNING) and its phases; run as root.
# Usage: bench/agent.sh [TASKS]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY_BENCH_TASKS="${1:-50}" cargo bench -p ferry-agent --bench run_task
