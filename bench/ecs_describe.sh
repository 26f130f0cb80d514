#!/usr/bin/env bash
# ECS DescribeTasks throughput over HTTP with SigV4 on loopback: starts a
# release `ferry server` on a free 127.0.0.1 port with a temporary data dir,
# runs the load generator (crates/api/examples/ecs_describe_load.rs) in
# another process, and stops the server. Traffic stays on 127.0.0.1; each
# phase runs SECONDS. Results: bench/results-ecs.md.
#
#   bench/ecs_describe.sh [CONNECTIONS] [SECONDS] [TASKS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
CONNS=${1:-32}
SECS=${2:-10}
TASKS=${3:-50}

cargo build --release -q -p ferry --bin ferry
cargo build --release -q -p ferry-api --example ecs_describe_load

start_server ecs_describe ferry-ecs-bench

echo "host: $(nproc) cores, $(uname -r); load generator and server share them"
target/release/examples/ecs_describe_load --endpoint "http://$addr" --credentials "$dir/data/credentials" \
  --connections "$CONNS" --seconds "$SECS" --tasks "$TASKS"
