#!/usr/bin/env bash
# Signed KMS requests/s with and without an idle connection flood, in the
# same run against the same server: the KMS load generator
# (crates/api/examples/kms_load.rs) runs three times, each phase
# GenerateRandom/GenerateDataKey/Decrypt for SECONDS:
#   1. no flood;
#   2. FLOOD idle connections held (caps raised above the flood and a long
#      header timeout, so every one stays open: the cost of holding them);
#   3. the same flood against a second server with the default caps
#      (256 per source), reopening every connection the server evicts
#      (the cost of refusing a flood that keeps coming back).
# Everything stays on 127.0.0.1.
#
#   bench/listener.sh [FLOOD] [SECONDS] [CONNECTIONS]     (PROFILE=debug for a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD=${1:-5000}
SECS=${2:-5}
CONNS=${3:-16}
PROFILE=${PROFILE:-release}
T=${CARGO_TARGET_DIR:-target}/$PROFILE
flag=--release; [ "$PROFILE" = debug ] && flag=
cargo build $flag -q -p ferry --bin ferry
cargo build $flag -q -p ferry-api --example kms_load
ulimit -n "$(ulimit -Hn)"

dir=$(mktemp -d /tmp/ferry-listener-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT

# start NAME ARGS...: a server with its own data dir; sets $addr.
start() {
  local name=$1; shift
  "$T/ferry" server --data-dir "$dir/$name" --listen 127.0.0.1:0 "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
  pids+=($!)
  server_pid=$!
  addr=
  for _ in $(seq 200); do
    addr=$(sed -n 's/^ferry: listening on \([^ ]*\).*/\1/p' "$dir/$name.out")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "server $name did not start" >&2; cat "$dir/$name.err" >&2; exit 1; }
}

load() { # load NAME ADDR
  "$T/examples/kms_load" --endpoint "http://$2" --credentials "$dir/$1/credentials" \
    --connections "$CONNS" --seconds "$SECS" | grep -E ' ops in ' | sed "s/^/[$3] /"
}

flood() { # flood ADDR [--reopen]; waits until the flood is open
  python3 bench/listener_flood.py "$@" >"$dir/flood.out" &
  flood_pid=$!
  pids+=($flood_pid)
  for _ in $(seq 600); do grep -q ready "$dir/flood.out" && return; sleep 0.1; done
  echo "flood did not open" >&2; exit 1
}

echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), profile $PROFILE, $CONNS load connections"
start held --max-connections $((FLOOD + 1000)) --max-connections-per-source $((FLOOD + 1000)) --header-timeout 10m
load held "$addr" "no flood"
flood "$addr" "$FLOOD"
echo "server fds with the flood held: $(ls /proc/"$server_pid"/fd | wc -l)"
load held "$addr" "$FLOOD idle held"
kill -TERM "$flood_pid"; wait "$flood_pid" || true

start capped
flood "$addr" "$FLOOD" --reopen
load capped "$addr" "$FLOOD idle, default caps, reopening"
echo "server fds during the capped flood: $(ls /proc/"$server_pid"/fd | wc -l)"
kill -TERM "$flood_pid"; wait "$flood_pid" || true
cat "$dir/flood.out"
