#!/usr/bin/env bash
# KMS throughput over HTTP with SigV4 on loopback: starts a release
# `ferry server` on a free 127.0.0.1 port with a temporary data dir, runs
# the load generator (crates/api/examples/kms_load.rs) in another process,
# and stops the server. Traffic stays on 127.0.0.1; the run is bounded by
# --seconds per phase.
#
#   bench/kms_load.sh [CONNECTIONS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-64}
SECS=${2:-10}

cargo build --release -q -p ferry --bin ferry
cargo build --release -q -p ferry-api --example kms_load

dir=$(mktemp -d /tmp/ferry-kms-bench.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

target/release/ferry server --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/server.out" 2>"$dir/server.err" &
server_pid=$!
for _ in $(seq 100); do
  addr=$(sed -n 's/^ferry: listening on \([^ ]*\).*/\1/p' "$dir/server.out")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "${addr:-}" ] || { echo "kms_load: server did not start" >&2; cat "$dir/server.err" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "host: $(nproc) cores, $(uname -r), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "the load generator and the server share these cores (and with whatever else runs)"
before=$(cpu_ticks "$server_pid")
/usr/bin/time -f "load generator CPU: %U s user + %S s system" \
  target/release/examples/kms_load --endpoint "http://$addr" --credentials "$dir/data/credentials" \
  --connections "$CONNS" --seconds "$SECS" | tee "$dir/load.out"
after=$(cpu_ticks "$server_pid")
ops=$(awk '/ ops in /{n += $2} END {print n}' "$dir/load.out")
tck=$(getconf CLK_TCK)
awk -v t=$((after - before)) -v hz="$tck" -v n="$ops" 'BEGIN {
  s = t / hz; printf "server CPU: %.1f s for %d requests = %.1f us/request (%.0f requests/s per fully used core)\n", s, n, s * 1e6 / n, n / s }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "audit records written: $(wc -l <"$dir/data/kms-audit.jsonl")"
