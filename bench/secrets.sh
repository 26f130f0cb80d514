#!/usr/bin/env bash
# Secrets Manager GetSecretValue, SSM GetParameter of a SecureString and
# STS AssumeRole over HTTP with SigV4 on loopback, next to KMS GenerateRandom as the
# baseline in the same run: starts a release `ferry server` on a free
# 127.0.0.1 port with a temporary data dir, runs the load generator
# (crates/api/examples/secrets_load.rs) in another process, and stops the
# server. Each GetSecretValue is a store read, a KMS Decrypt of the
# version's data key as the caller (audited) and AES-256-GCM; the baseline
# is the same HTTP, SigV4, JSON and audit path without them.
# Results: bench/results-secrets.md.
#
#   bench/secrets.sh [CONNECTIONS] [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
CONNS=${1:-32}
SECS=${2:-10}
ROUNDS=${3:-3}

cargo build --release -q -p ferry --bin ferry
cargo build --release -q -p ferry-api --example secrets_load

start_server secrets ferry-secrets-bench

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "host: $(nproc) cores, $(uname -r), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "the load generator and the server share these cores (and with whatever else runs)"
before=$(cpu_ticks "$server_pid")
"${CARGO_TARGET_DIR:-target}"/release/examples/secrets_load --endpoint "http://$addr" --credentials "$dir/data/credentials" \
  --connections "$CONNS" --seconds "$SECS" --rounds "$ROUNDS" | tee "$dir/load.out"
after=$(cpu_ticks "$server_pid")
echo "server CPU over the run: $(( (after - before) / $(getconf CLK_TCK) )) s"

echo "median over $ROUNDS round(s):"
awk '/^round /{
  sub(/^round [0-9]+ /, ""); name = $0; sub(/ +[0-9]+ requests.*/, "", name)
  match($0, /= +[0-9]+ req\/s/); rps = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", rps)
  n[name]++; v[name, n[name]] = rps; order[name] = ++seen[name] == 1 ? ++k : order[name]; names[order[name]] = name
} END {
  for (i = 1; i <= k; i++) {
    name = names[i]; c = n[name]
    for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++) if (v[name, b] < v[name, a]) { t = v[name, a]; v[name, a] = v[name, b]; v[name, b] = t }
    printf "  %-28s %8d req/s\n", name, v[name, int((c + 1) / 2)]
  }
}' "$dir/load.out"
echo "KMS audit records written: $(wc -l <"$dir/data/kms-audit.jsonl")"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
