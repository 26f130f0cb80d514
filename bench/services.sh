#!/usr/bin/env bash
# Time for a 5-task service to reach a steady state after
# `update-service --force-new-deployment` (every task replaced, LUKS2
# volumes, minimumHealthyPercent 100 / maximumPercent 200), against the
# baseline in the same run: the initial 5-task rollout from zero.
# Usage: FERRY_BIN=target/release/ferry bench/services.sh [ROUNDS]
set -euo pipefail
ROUNDS=${1:-3}
exec python3 "$(dirname "$0")/services_bench.py" "$ROUNDS"
