#!/usr/bin/env bash
# RunTask-to-RUNNING for a task with a task role, an execution role and
# three secrets (Secrets Manager whole and JSON key, SSM SecureString)
# against the same task without them, alternating, in the same run.
# Run as root after `cargo build --release -p ferry`.
# Usage: bench/identity.sh [--tasks 20]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_BIN=${FERRY_BIN:-$PWD/target/release/ferry}
exec python3 bench/identity_bench.py "$@"
