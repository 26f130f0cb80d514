# Sourced by the bench scripts: start_server for those that load a release
# `ferry server` over loopback (kms_load.sh, ecs_describe.sh), use_ferry_bin
# for those whose Python driver starts servers itself (restart.sh,
# sg_start.sh).
#
# start_server NAME PREFIX: makes a temporary directory $dir
# (/tmp/PREFIX.XXXXXX), starts target/release/ferry server on a free
# 127.0.0.1 port with its data in $dir/data, and sets $server_pid and $addr
# (host:port). On exit the server gets SIGTERM and $dir is removed. NAME
# prefixes the error message when the server does not start.
start_server() {
  dir=$(mktemp -d "/tmp/$2.XXXXXX")
  server_pid=
  trap _stop_server EXIT

  "${CARGO_TARGET_DIR:-target}"/release/ferry server --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/server.out" 2>"$dir/server.err" &
  server_pid=$!
  for _ in $(seq 100); do
    addr=$(sed -n 's/^ferry: listening on \([^ ]*\).*/\1/p' "$dir/server.out")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "${addr:-}" ] || { echo "$1: server did not start" >&2; cat "$dir/server.err" >&2; exit 1; }
}

_stop_server() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$dir"
}

# use_ferry_bin: exports FERRY_BIN for the Python drivers; unless it is set,
# the release build if there is one, else the debug build.
use_ferry_bin() {
  if [ -z "${FERRY_BIN:-}" ]; then
    FERRY_BIN=$PWD/target/release/ferry
    [ -x "$FERRY_BIN" ] || FERRY_BIN=$PWD/target/debug/ferry
  fi
  export FERRY_BIN
}
