#!/usr/bin/env bash
# Logs Insights over 1,000,000 events next to FilterLogEvents over the
# same events, same server, same run (bench/logs_query.py). Run as root
# after `cargo build --release -p ferry`, under the bench lock:
#   flock /tmp/ferry-bench.lock bench/logs.sh [--events 1000000] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_BIN=${FERRY_BIN:-$PWD/target/release/ferry}
[ -x "$FERRY_BIN" ] || { echo "build first: cargo build --release -p ferry" >&2; exit 1; }
exec python3 bench/logs_query.py "$@"
