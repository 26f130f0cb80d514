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
. bench/lib.sh
CONNS=${1:-64}
SECS=${2:-10}

cargo build --release -q -p ferry --bin ferry
cargo build --release -q -p ferry-api --example kms_load

start_server kms_load ferry-kms-bench

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "host: $(nproc) cores, $(uname -r), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "the load generator and the server share these cores (and with whatever else runs)"
before=$(cpu_ticks "$server_pid")
/usr/bin/time -o "$dir/time" -f "%U %S" \
  target/release/examples/kms_load --endpoint "http://$addr" --credentials "$dir/data/credentials" \
  --connections "$CONNS" --seconds "$SECS" | tee "$dir/load.out"
after=$(cpu_ticks "$server_pid")
ops=$(awk '/ ops in /{n += $2} END {print n}' "$dir/load.out")
tck=$(getconf CLK_TCK)
read -r lu ls <"$dir/time"
awk -v t=$((after - before)) -v hz="$tck" -v n="$ops" -v lu="$lu" -v ls="$ls" -v cores="$(nproc)" 'BEGIN {
  s = t / hz; l = lu + ls
  printf "server CPU: %.1f s for %d requests = %.1f us/request\n", s, n, s * 1e6 / n
  printf "load generator CPU: %.1f s user + %.1f s system = %.1f us/request\n", lu, ls, l * 1e6 / n
  printf "both: %.1f us/request: %d idle cores would bound the rate at %.0f requests/s\n", (s + l) * 1e6 / n, cores, cores * n / (s + l) }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "audit records written: $(wc -l <"$dir/data/kms-audit.jsonl")"
