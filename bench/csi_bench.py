#!/usr/bin/env python3
"""NodePublishVolume latency of `ferry csi` (issue 15): 20 GiB volumes
published one at a time (p50/p90/max, and NodeUnpublishVolume), then 20
pods' volumes published at once (wall time and per-call latencies).

Drives the plugin over its Unix socket with the e2e test's kubelet-like
client (tests/e2e/test_csi.py) against a fresh `ferry server` (its KMS).
Run as root, via bench/csi.sh."""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

from conftest import FerryServer  # noqa: E402
import test_csi as t  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(x):
    return f"{x * 1000:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serial", type=int, default=15)
    ap.add_argument("--parallel", type=int, default=20)
    ap.add_argument("--size", default="20Gi")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ferry-bench-csi-")
    srv = FerryServer(os.path.join(root, "data"))
    srv.start()
    plugin = None
    try:
        t.plugin_user(srv, root)
        plugin = t.Plugin(srv, root, os.path.join(root, "credentials"))
        plugin.start()
        pub, unpub = [], []
        for _ in range(a.serial):
            pod = t.new_pod("bench")
            v, tgt = f"csi-{uuid.uuid4().hex}", t.target_for(plugin, pod[2])
            s = time.perf_counter()
            plugin.publish(v, tgt, pod, attrs={"size": a.size})
            pub.append(time.perf_counter() - s)
            s = time.perf_counter()
            plugin.unpublish(v, tgt)
            unpub.append(time.perf_counter() - s)

        pods = [t.new_pod(f"p{i}") for i in range(a.parallel)]
        jobs = [(f"csi-{uuid.uuid4().hex}", t.target_for(plugin, p[2]), p) for p in pods]
        lat, errors = [0.0] * len(jobs), []
        go = threading.Barrier(len(jobs) + 1)

        def one(i):
            v, tgt, pod = jobs[i]
            go.wait()
            s = time.perf_counter()
            try:
                plugin.publish(v, tgt, pod, attrs={"size": a.size})
            except Exception as e:  # reported below
                errors.append(repr(e))
            lat[i] = time.perf_counter() - s

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
        for th in threads:
            th.start()
        go.wait()
        s = time.perf_counter()
        for th in threads:
            th.join()
        wall = time.perf_counter() - s
        s = time.perf_counter()
        for v, tgt, _ in jobs:
            plugin.unpublish(v, tgt)
        unpub_all = time.perf_counter() - s
        if errors:
            print("errors:", errors, file=sys.stderr)
            return 1

        print(f"| {a.size} volume, one at a time ({a.serial} runs) | p50 ms | p90 ms | max ms |")
        print("|---|---:|---:|---:|")
        print(f"| NodePublishVolume | {ms(statistics.median(pub))} | {ms(pct(pub, 90))} | {ms(max(pub))} |")
        print(f"| NodeUnpublishVolume | {ms(statistics.median(unpub))} | {ms(pct(unpub, 90))} | {ms(max(unpub))} |")
        print()
        print(f"| {a.parallel} pods published at once ({a.size} each) | ms |")
        print("|---|---:|")
        print(f"| all published (wall) | {ms(wall)} |")
        print(f"| per call p50 | {ms(statistics.median(lat))} |")
        print(f"| per call max | {ms(max(lat))} |")
        print(f"| unpublish all, one after another | {ms(unpub_all)} |")
        return 0
    finally:
        if plugin:
            plugin.stop()
        srv.stop()
        os.system(f"umount -R {root} 2>/dev/null")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
