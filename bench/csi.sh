#!/usr/bin/env bash
# NodePublishVolume p50 for 20 GiB volumes and 20 pods published at once
# (`ferry csi`, issue 15). Run as root after `cargo build --release -p ferry`,
# under the bench lock: flock /tmp/ferry-bench.lock bench/csi.sh
# Options: --serial N (default 15) --parallel N (default 20) --size Q (20Gi).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
use_ferry_bin
exec python3 bench/csi_bench.py "$@"
