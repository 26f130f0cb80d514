#!/usr/bin/env bash
# ECS DescribeTasks throughput over HTTP with SigV4 on loopback: starts a
# release `ferry server` on a free 127.0.0.1 port with a temporary data dir,
# runs the load generator (crates/control/examples/ecs_describe_load.rs) in
# another process, and stops the server. Traffic stays on 127.0.0.1; each
# phase runs SECONDS. Results: bench/results-ecs.md.
#
#   bench/ecs_describe.sh [CONNECTIONS] [SECONDS] [TASKS]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-32}
SECS=${2:-10}
TASKS=${3:-50}

cargo build --release -q -p ferry --bin ferry
cargo build --release -q -p ferry-control --example ecs_describe_load

dir=$(mktemp -d /tmp/ferry-ecs-bench.XXXXXX)
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
[ -n "${addr:-}" ] || { echo "ecs_describe: server did not start" >&2; cat "$dir/server.err" >&2; exit 1; }

echo "host: $(nproc) cores, $(uname -r); load generator and server share them"
target/release/examples/ecs_describe_load --endpoint "http://$addr" --credentials "$dir/data/credentials" \
  --connections "$CONNS" --seconds "$SECS" --tasks "$TASKS"
