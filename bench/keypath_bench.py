"""Driver for bench/keypath.sh: what one task costs the KMS, and how long
it takes to start, for two ferry builds in the same run.

For each build, in alternating order over several rounds: a fresh server
(its own data dir), the busybox httpd image, then tasks one at a time on
the platform key (the `default` cluster, platform version 1.4.0): RunTask,
DescribeTasks until RUNNING (polled every 5 ms), StopTask, DescribeTasks
until STOPPED. The audit trail (`kms-audit.jsonl`) is read between tasks,
so every record written while a task ran is that task's: the KMS calls per
task, by operation. Reported: calls per task (median), RunTask-to-RUNNING
p50 per build, and the ratio of the two p50s.
"""
import argparse
import collections
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from conftest import FerryServer, import_httpd  # noqa: E402
from task_bench import START_TD, pct, start_one, wait_stopped  # noqa: E402


def audit_lines(srv):
    with open(os.path.join(srv.data_dir, "kms-audit.jsonl")) as f:
        return [json.loads(line) for line in f]


def block(binary, tasks, root):
    """Runs `tasks` tasks one at a time on a fresh server of `binary`;
    returns (latencies, per-task KMS operation counters)."""
    os.environ["FERRY_BIN"] = binary
    d = tempfile.mkdtemp(prefix="keypath-", dir=root)
    srv = FerryServer(os.path.join(d, "data"))
    try:
        srv.start()
        import_httpd(srv, pathlib.Path(d))
        ecs = srv.client("ecs")
        ecs.register_task_definition(**START_TD)
        lat, calls = [], []
        seen = len(audit_lines(srv))
        for _ in range(tasks):
            arn, took = start_one(ecs, "bench-start")
            lat += took
            ecs.stop_task(cluster="default", task=arn, reason="bench")
            wait_stopped(ecs, [arn])
            lines = audit_lines(srv)
            calls.append(collections.Counter(e["eventName"] for e in lines[seen:]))
            seen = len(lines)
        return lat, calls
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="the other ferry binary (e.g. before a change)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--tasks", type=int, default=10, help="tasks per block")
    a = ap.parse_args()
    builds = {"this build": os.environ["FERRY_BIN"], "baseline": os.path.abspath(a.baseline)}
    root = tempfile.mkdtemp(prefix="ferry-bench-keypath-", dir="/var/tmp")
    lat = {b: [] for b in builds}
    calls = {b: [] for b in builds}
    try:
        print(f"host: {os.cpu_count()} cores, {os.uname().release}, load average before: "
              f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
        for r in range(a.rounds):
            order = list(builds) if r % 2 == 0 else list(reversed(builds))
            for b in order:
                l, c = block(builds[b], a.tasks, root)
                lat[b] += l
                calls[b] += c
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = a.rounds * a.tasks
    print(f"\n{n} tasks per build ({a.rounds} rounds of {a.tasks}, alternating), platform key, 1.4.0:")
    print("| build | KMS calls per task | of which DescribeKey | calls by operation (median per task) "
          "| RunTask to RUNNING p50 ms | p99 ms |")
    print("|---|---:|---:|---|---:|---:|")
    for b in builds:
        totals = [sum(c.values()) for c in calls[b]]
        ops = sorted({op for c in calls[b] for op in c})
        by_op = ", ".join(f"{op} {statistics.median(c[op] for c in calls[b]):g}" for op in ops)
        print(f"| {b} | {statistics.median(totals):g} | "
              f"{statistics.median(c['DescribeKey'] for c in calls[b]):g} | {by_op} | "
              f"{pct(lat[b], 0.5) * 1000:.0f} | {pct(lat[b], 0.99) * 1000:.0f} |")
    print(f"ratio of p50, this build / baseline: "
          f"{pct(lat['this build'], 0.5) / pct(lat['baseline'], 0.5):.2f}")


if __name__ == "__main__":
    main()
