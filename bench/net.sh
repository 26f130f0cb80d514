#!/usr/bin/env bash
# Task networking overhead: TCP throughput (iperf3) and new TCP connections
# per second between two tasks of one agent, with the security-group table
# in place and with it removed, alternating in one run (medians). Root only.
# Usage: bench/net.sh [SECONDS_PER_MEASUREMENT] [ROUNDS]   (default 5, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v iperf3 >/dev/null || { echo "net.sh: iperf3 is missing (scripts/setup)" >&2; exit 1; }
FERRY_NET_BENCH_SECS="${1:-5}" FERRY_NET_BENCH_ROUNDS="${2:-3}" \
  cargo test -q -p ferry --test agent -- --ignored --exact net_bench --nocapture
