"""Driver for bench/start.sh: the task start path, each task network driver
and OCI runtime next to the others in one run.

One release `ferry server` per configuration (netlink+runc, cni+runc, and
netlink+crun where crun can run on this host), all up at once, each with
its own data dir, task network and subnet. Tasks (platform 1.4.0, the
source document's busybox task) are started one at a time, alternating
between the servers in a rotating order, so every configuration sees the
same machine state; each is stopped before the next starts. RunTask to
RUNNING is measured through the API (DescribeTasks polled every 5 ms); the
network phase comes from the server's "task ended" log line. Then, per
configuration, N tasks in one RunTask (--count, batched by 10 as the API
allows) and the time until all are RUNNING.
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import FerryServer, import_httpd  # noqa: E402
import task_bench as tb  # noqa: E402


def crun_usable():
    """None if crun can run here, else why not (the agent's own check)."""
    if not shutil.which("crun"):
        return "crun is not installed"
    try:
        left = open("/sys/fs/cgroup/unified/cgroup.controllers").read().strip()
    except OSError:
        return None
    return f"hybrid cgroups with {left} on the v2 side (crun refuses them)" if left else None


def burst(ecs, net, n):
    """Seconds until all of n tasks started at once are RUNNING."""
    t0 = time.monotonic()
    arns = []
    while len(arns) < n:
        r = ecs.run_task(cluster="default", taskDefinition="bench-start", launchType="FARGATE",
                         platformVersion="1.4.0", count=min(10, n - len(arns)),
                         networkConfiguration=net)
        if r.get("failures"):
            raise SystemExit(f"run-task failed: {r['failures']}")
        arns += [t["taskArn"] for t in r["tasks"]]
    lat = tb.wait_running(ecs, arns, t0, poll=0.02, timeout=300)
    for a in arns:
        ecs.stop_task(cluster="default", task=a, reason="bench")
    tb.wait_stopped(ecs, arns)
    return max(lat), tb.pct(lat, 0.5), arns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--burst", default="10,50")
    a = ap.parse_args()

    configs = [("netlink", "runc"), ("cni", "runc")]
    why = crun_usable()
    if why is None:
        configs.append(("netlink", "crun"))
    root = tempfile.mkdtemp(prefix="ferry-bench-start-", dir="/var/tmp")
    servers = {}
    try:
        for i, (drv, rt) in enumerate(configs):
            d = pathlib.Path(root) / f"{drv}-{rt}"
            d.mkdir()
            srv = FerryServer(str(d / "data"), extra_args=[
                "--task-network", f"fbst{i}", "--task-subnet", f"198.19.{200 + 8 * i}.0/21",
                "--task-network-driver", drv, "--oci-runtime", rt,
                "--storage-overcommit", "1000"])
            srv.start()
            import_httpd(srv, d)
            ecs = srv.client("ecs")
            ecs.register_task_definition(**tb.START_TD)
            servers[(drv, rt)] = (srv, ecs, srv.network_configuration)
        print(f"host: {os.cpu_count()} cores, {os.uname().release}, "
              f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}")
        if why:
            print(f"crun: not measured: {why}")

        lat = {c: [] for c in configs}
        arns = {c: [] for c in configs}
        for i in range(a.tasks):
            k = i % len(configs)
            for c in configs[k:] + configs[:k]:
                srv, ecs, net = servers[c]
                arn, took = tb.start_one(ecs, "bench-start", net)
                lat[c] += took
                arns[c].append(arn)
                ecs.stop_task(cluster="default", task=arn, reason="bench")
                tb.wait_stopped(ecs, [arn])
        base = configs[0]
        print(f"\nRunTask to RUNNING, {a.tasks} tasks per configuration, one at a time, alternating "
              "(platform 1.4.0: encrypted volume; busybox image):")
        print("| network | runtime | p50 ms | p99 ms | network phase ms (mean) | volume phase ms (mean) |"
              " p50 / netlink+runc | network / netlink+runc |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        ph = {c: tb.phase_means(servers[c][0].log_path, arns[c]) for c in configs}
        for c in configs:
            print(f"| {c[0]} | {c[1]} | {tb.pct(lat[c], 0.5) * 1000:.0f} | {tb.pct(lat[c], 0.99) * 1000:.0f} | "
                  f"{ph[c].get('network', float('nan')):.1f} | {ph[c].get('volume', float('nan')):.0f} | "
                  f"{tb.pct(lat[c], 0.5) / tb.pct(lat[base], 0.5):.2f} | "
                  f"{ph[c].get('network', float('nan')) / ph[base].get('network', float('nan')):.2f} |")

        for n in [int(x) for x in a.burst.split(",") if x]:
            print(f"\n{n} tasks at once (RunTask --count, batches of 10): time until all RUNNING")
            print("| network | runtime | all RUNNING s | p50 s | network phase ms (mean) |")
            print("|---|---|---:|---:|---:|")
            for c in configs:
                srv, ecs, net = servers[c]
                last, p50, done = burst(ecs, net, n)
                nw = tb.phase_means(srv.log_path, done).get("network", float("nan"))
                print(f"| {c[0]} | {c[1]} | {last:.2f} | {p50:.2f} | {nw:.1f} |")
        print(f"\nload average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    finally:
        for srv, _, _ in servers.values():
            srv.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
