#!/usr/bin/env bash
# Image throughput and start-up: push and pull of a ~200 MB image through
# ferry's registry (sealed under KMS data keys) next to Debian's
# docker-registry on the same machine, alternating, in the same run; and
# RunTask-to-RUNNING for an image in the host's store next to a first pull
# from ferry's registry.
# Run as root after `cargo build --release -p ferry`.
# Usage: bench/images.sh [--rounds 5] [--size-mb 200] [--tasks 8]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_BIN=${FERRY_BIN:-$PWD/target/release/ferry}
exec python3 bench/images_bench.py "$@"
