"""Driver for bench/task.sh: task start-up latency and fio inside tasks,
encrypted (platform 1.4.0) against unencrypted (1.3.0) in the same run.

Everything goes through the public API of a release `ferry server` with
boto3 (SigV4 on loopback), as a user would drive it:

1. RunTask-to-RUNNING, N tasks one after another, 1.4.0 and 1.3.0
   interleaved: the time from the RunTask call to DescribeTasks showing
   RUNNING (polled every 5 ms), p50/p99; the mean cost of each start-up
   phase comes from the server's "task ended" log lines.
2. Ten tasks at once (RunTask --count 10, 1.4.0): each task's time to RUNNING.
3. fio inside a task (the host's fio in an image built by
   tests/tools/make_httpd_image.py --with-fio), on a task volume without a
   host path (so on the task's ephemeral storage), 1.4.0 vs 1.3.0: one task
   per job and platform, the two platforms' tasks of a job back to back (so
   both see the disk in the same state) in alternating order, the ratio of
   each pair, medians and spread; fio's JSON report comes back through
   awslogs. `--storage ram` puts the data dir on a tmpfs: no disk noise, the
   data path CPU-bound, the worst case for the cipher's share.
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import FerryServer, import_httpd  # noqa: E402

START_TD = {
    "family": "bench-start", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
    "cpu": "256", "memory": "512",
    "containerDefinitions": [{"name": "app", "image": "httpd:2.4", "stopTimeout": 1,
                              "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]}],
}
FIO_JOBS = [
    # name, fio arguments
    ("seqwrite MB/s", ["--rw=write", "--bs=1M", "--iodepth=16"]),
    ("seqread MB/s", ["--rw=read", "--bs=1M", "--iodepth=16"]),
    ("4k randread IOPS", ["--rw=randread", "--bs=4k", "--iodepth=32"]),
    ("4k randwrite IOPS", ["--rw=randwrite", "--bs=4k", "--iodepth=32"]),
]
PHASES = ["resolve", "volume", "cgroup", "network", "unpack", "bundles"]


# Set in main() once the server runs: its default subnet and group.
NET = None


def fio_td(i, size, secs):
    """Task definition running fio job i once on the task's ephemeral volume."""
    args = FIO_JOBS[i][1]
    script = (f"fio --name=j --directory=/data --size={size} --ioengine=libaio --direct=1 "
              f"--time_based --runtime={secs} --ramp_time=1 --output-format=json {' '.join(args)} "
              "| tr -d '\\n'; echo")
    return {
        "family": f"bench-fio-{i}", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "2048", "memory": "4096",
        "volumes": [{"name": "scratch"}],
        "containerDefinitions": [{
            "name": "fio", "image": "ferry-bench/fio:1", "stopTimeout": 1,
            "entryPoint": ["sh", "-c"], "command": [script],
            "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/data"}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/bench/fio", "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "fio", "awslogs-create-group": "true"}},
        }],
    }


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


def describe(ecs, arns):
    return ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]


def wait_running(ecs, arns, t0, poll=0.005, timeout=120):
    """Seconds from t0 to RUNNING for each task (fails on STOPPED)."""
    took = {}
    deadline = time.time() + timeout
    while len(took) < len(arns):
        if time.time() > deadline:
            raise SystemExit(f"tasks did not reach RUNNING in {timeout} s")
        now = time.monotonic()
        for t in describe(ecs, [a for a in arns if a not in took]):
            if t["lastStatus"] == "RUNNING":
                took[t["taskArn"]] = now - t0
            elif t["lastStatus"] == "STOPPED":
                raise SystemExit(f"task stopped: {t.get('stopCode')}: {t.get('stoppedReason')}")
        time.sleep(poll)
    return [took[a] for a in arns]


def start_one(ecs, family, net=None):
    """Runs one task of `family` (platform 1.4.0) and waits until it is
    RUNNING; returns (its ARN, [seconds from RunTask to RUNNING])."""
    t0 = time.monotonic()
    r = ecs.run_task(cluster="default", taskDefinition=family, launchType="FARGATE",
                     platformVersion="1.4.0", count=1, networkConfiguration=net or NET)
    if r.get("failures"):
        raise SystemExit(f"run-task failed: {r['failures']}")
    arn = r["tasks"][0]["taskArn"]
    return arn, wait_running(ecs, [arn], t0)


def alternating_starts(ecs, families, tasks, before=None):
    """RunTask-to-RUNNING seconds per family, `tasks` each, one task at a
    time, the families' order alternating every round so neither always
    runs first. Each task is stopped (and waited for) before the next.
    `before(kind)`, if given, runs before each start, outside the time."""
    lat = {k: [] for k in families}
    kinds = list(families)
    for i in range(tasks):
        for kind in (kinds if i % 2 == 0 else kinds[::-1]):
            if before:
                before(kind)
            arn, took = start_one(ecs, families[kind])
            lat[kind] += took
            ecs.stop_task(cluster="default", task=arn, reason="bench")
            wait_stopped(ecs, [arn])
    return lat


def wait_stopped(ecs, arns, timeout=300):
    deadline = time.time() + timeout
    left = list(arns)
    while left:
        if time.time() > deadline:
            raise SystemExit("tasks did not stop")
        for i in range(0, len(left), 100):
            for t in describe(ecs, left[i:i + 100]):
                if t["lastStatus"] == "STOPPED":
                    left.remove(t["taskArn"])
        time.sleep(0.2)


def run(ecs, td, pv, count=1):
    r = ecs.run_task(cluster="default", taskDefinition=td, launchType="FARGATE", platformVersion=pv,
                     count=count, networkConfiguration=NET)
    if r.get("failures"):
        raise SystemExit(f"run-task failed: {r['failures']}")
    return [t["taskArn"] for t in r["tasks"]]


def phase_means(log_path, arns):
    want = set(arns)
    sums = {p: [] for p in PHASES + ["to_running"]}
    with open(log_path) as f:
        for line in f:
            if "task ended" not in line:
                continue
            m = re.search(r"task=\"?([^\s\"]+)", line)
            if not m or m.group(1) not in want:
                continue
            for p in sums:
                v = re.search(rf"\b{p}_ms=([0-9.]+)", line)
                if v:
                    sums[p].append(float(v.group(1)))
    return {p: statistics.mean(v) for p, v in sums.items() if v}


def fio_result(logs, arn, i):
    """Job i's figure (MB/s or IOPS) from the fio JSON report the task logged."""
    task_id = arn.rsplit("/", 1)[1]
    events = logs.get_log_events(logGroupName="/bench/fio", logStreamName=f"fio/fio/{task_id}",
                                 startFromHead=True)["events"]
    reports = [json.loads(e["message"][e["message"].index("{"):]) for e in events if "{" in e["message"]]
    if len(reports) != 1:
        raise SystemExit(f"expected one fio report, got {len(reports)}: "
                         + " | ".join(e["message"][:200] for e in events))
    name = FIO_JOBS[i][0]
    j = reports[0]["jobs"][0]
    side = j["write"] if "write" in name else j["read"]
    return side["bw"] / 1024 if "MB/s" in name else side["iops"]


def job_key(name):
    """The short name --fio-jobs uses: "4k randread IOPS" -> "randread"."""
    return name.split()[-2]


def fio_rounds(ecs, logs, rounds, jobs):
    """Per job, `rounds` pairs of tasks (one per platform, run back to back,
    the order alternating so neither platform always goes first); returns
    {job: {"1.4.0": [...], "1.3.0": [...]}} for the jobs (indices into
    FIO_JOBS) with the pairs aligned."""
    res = {FIO_JOBS[i][0]: {"1.4.0": [], "1.3.0": []} for i in jobs}
    for r in range(rounds):
        for i in jobs:
            name = FIO_JOBS[i][0]
            for pv in (("1.4.0", "1.3.0") if r % 2 == 0 else ("1.3.0", "1.4.0")):
                arn = run(ecs, f"bench-fio-{i}", pv)
                wait_stopped(ecs, arn, timeout=600)
                t = describe(ecs, arn)[0]
                if t["containers"][0].get("exitCode") != 0:
                    raise SystemExit(f"fio task failed: {t.get('stoppedReason')} {t['containers'][0]}")
                res[name][pv].append(fio_result(logs, arn[0], i))
    return res


def start_latency(ecs, srv, tasks):
    """RunTask to RUNNING one at a time (both platforms), then ten at once."""
    lat = {"1.4.0": [], "1.3.0": []}
    arns = {"1.4.0": [], "1.3.0": []}
    for _ in range(tasks):
        for pv in lat:
            t0 = time.monotonic()
            arn = run(ecs, "bench-start", pv)
            lat[pv] += wait_running(ecs, arn, t0)
            arns[pv] += arn
            ecs.stop_task(cluster="default", task=arn[0], reason="bench")
    wait_stopped(ecs, arns["1.4.0"] + arns["1.3.0"])
    print(f"\nRunTask to RUNNING, {tasks} tasks each, one at a time (20 GiB volume, busybox image):")
    print("| platform | p50 ms | p99 ms | " + " | ".join(f"{p} ms" for p in PHASES) + " |")
    print("|---|---:|---:|" + "---:|" * len(PHASES))
    for pv in lat:
        ph = phase_means(srv.log_path, arns[pv])
        print(f"| {pv} {'(encrypted)' if pv == '1.4.0' else '(unencrypted)'} | "
              f"{pct(lat[pv], 0.5) * 1000:.0f} | {pct(lat[pv], 0.99) * 1000:.0f} | "
              + " | ".join(f"{ph.get(p, float('nan')):.0f}" for p in PHASES) + " |")
    print(f"ratio p50 encrypted / unencrypted: {pct(lat['1.4.0'], 0.5) / pct(lat['1.3.0'], 0.5):.2f}")

    t0 = time.monotonic()
    ten = run(ecs, "bench-start", "1.4.0", count=10)
    ten_lat = wait_running(ecs, ten, t0)
    for arn in ten:
        ecs.stop_task(cluster="default", task=arn, reason="bench")
    wait_stopped(ecs, ten)
    print(f"\nten tasks at once (1.4.0): p50 {pct(ten_lat, 0.5) * 1000:.0f} ms, "
          f"last {max(ten_lat) * 1000:.0f} ms; mean phases: "
          + ", ".join(f"{p} {v:.0f} ms" for p, v in phase_means(srv.log_path, ten).items()))


def ram_root(root, size):
    """Mounts a tmpfs on root, so the data dir (task volumes included) sits
    in memory: no disk noise, and the data path is CPU-bound."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "ferry-bench", root], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--fio-rounds", type=int, default=6)
    ap.add_argument("--fio-jobs", default="",
                    help="comma-separated subset of seqwrite,seqread,randread,randwrite (default: all)")
    ap.add_argument("--storage", choices=["disk", "ram"], default="disk",
                    help="where the data dir lives: the host disk, or a tmpfs (CPU-bound data path)")
    ap.add_argument("--fio-size", default="512m")
    ap.add_argument("--fio-seconds", type=int, default=5)
    a = ap.parse_args()

    root = tempfile.mkdtemp(prefix="ferry-bench-task-", dir="/var/tmp")
    srv = FerryServer(os.path.join(root, "data"))
    try:
        if a.storage == "ram":
            ram_root(root, "12g")
        srv.start()
        import_httpd(srv, pathlib.Path(root))
        import_httpd(srv, pathlib.Path(root), name="ferry-bench/fio:1", extra=["--with-fio"])
        ecs, logs = srv.client("ecs"), srv.client("logs")
        # The default VPC's subnet and group, looked up (made-up ids fail).
        global NET
        NET = srv.network_configuration
        ecs.register_task_definition(**START_TD)
        for i in range(len(FIO_JOBS)):
            ecs.register_task_definition(**fio_td(i, a.fio_size, a.fio_seconds))
        print(f"host: {os.cpu_count()} cores, {os.uname().release}, data dir on {a.storage}, "
              f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}")

        if a.tasks:
            start_latency(ecs, srv, a.tasks)
        if a.fio_rounds:
            keys = [job_key(n) for n, _ in FIO_JOBS]
            want = a.fio_jobs.split(",") if a.fio_jobs else keys
            if unknown := set(want) - set(keys):
                raise SystemExit(f"unknown --fio-jobs {sorted(unknown)}; known: {','.join(keys)}")
            res = fio_rounds(ecs, logs, a.fio_rounds, [keys.index(k) for k in want])
            print(f"\nfio inside a task (libaio, direct, {a.fio_size} file, {a.fio_seconds} s per job, "
                  f"{a.fio_rounds} rounds; each round runs every job once per platform, back to back, "
                  "in alternating order; ratio = 1.4.0 / 1.3.0 of each pair):")
            print("| job | 1.4.0 encrypted (median) | 1.3.0 unencrypted (median) | ratio, median of pairs | min | max |")
            print("|---|---:|---:|---:|---:|---:|")
            for name in res:
                e, p = res[name]["1.4.0"], res[name]["1.3.0"]
                ratios = [x / y for x, y in zip(e, p)]
                print(f"| {name} | {statistics.median(e):.0f} | {statistics.median(p):.0f} | "
                      f"{statistics.median(ratios):.2f} | {min(ratios):.2f} | {max(ratios):.2f} |")
        print(f"\nload average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    finally:
        srv.stop()
        if a.storage == "ram":
            subprocess.run(["umount", root], check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
