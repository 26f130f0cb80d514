"""Driver for bench/console.sh: the web console's data endpoints on a
server holding 500 tasks and a 100,000-record KMS audit trail.

1. A release `ferry server` (tests/e2e's FerryServer), the httpd stand-in
   image, the source document's task definition (examples/) and a tiny one
   whose container exits at once; RUNNING tasks of the source definition,
   the rest of TASKS tiny ones run ten at a time until they stop (all stay
   in the store, STOPPED).
2. RECORDS KMS Encrypt calls, SigV4-signed over keep-alive connections from
   THREADS threads: one audit record each.
3. Sign in to the console (POST /console/api/signin), then measure, over
   one keep-alive connection each:
   - GET /console/api/task for a RUNNING task (DescribeTasks + its volume +
     its KMS records from the task index) against DescribeTasks of the same
     task through the API (SigV4), alternating, p50/p90 and the ratio; the
     first task page (the index built by one scan of the trail) apart;
   - the whole trail paged 500 records at a time (before=next): ms per
     page, pages, the server's VmRSS before and after;
   - a task-filtered audit query (taskArn=, limit 100) p50, and a filter the
     index does not answer (eventName=RetireGrant, a scan of the trail).

Prints a Markdown report on stdout; progress goes to stderr.
"""
import argparse
import base64
import http.client
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import (SOURCE_TD, FerryServer, create_source_log_group,  # noqa: E402
                      import_httpd)

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

TINY_TD = {
    "family": "bench-tiny", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
    "cpu": "256", "memory": "512",
    "containerDefinitions": [{"name": "app", "image": "httpd:2.4", "stopTimeout": 1,
                              "entryPoint": ["sh", "-c"], "command": ["true"]}],
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


def ms(s):
    return f"{s * 1000:.2f} ms"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


class Signed:
    """SigV4-signed JSON 1.1 POSTs over one keep-alive connection."""

    def __init__(self, srv, service, target_prefix):
        key, secret = srv.credentials()
        self.auth = SigV4Auth(Credentials(key, secret), service, srv.region)
        self.endpoint = srv.endpoint
        self.prefix = target_prefix
        host = urllib.parse.urlparse(srv.endpoint).netloc
        self.conn = http.client.HTTPConnection(host, timeout=60)

    def call(self, op, body):
        data = json.dumps(body).encode()
        req = AWSRequest(method="POST", url=self.endpoint + "/", data=data, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{self.prefix}.{op}"})
        self.auth.add_auth(req)
        self.conn.request("POST", "/", body=data, headers=dict(req.headers.items()))
        r = self.conn.getresponse()
        out = r.read()
        if r.status != 200:
            raise SystemExit(f"{op}: HTTP {r.status}: {out[:300]!r}")
        return json.loads(out)


class Console:
    """A signed-in console session over one keep-alive connection."""

    def __init__(self, srv):
        host = urllib.parse.urlparse(srv.endpoint).netloc
        self.conn = http.client.HTTPConnection(host, timeout=120)
        key, secret = srv.credentials()
        self.conn.request("POST", "/console/api/signin",
                          body=json.dumps({"accessKeyId": key, "secretAccessKey": secret}),
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"sign-in: HTTP {r.status}: {body[:300]!r}")
        cookie = r.getheader("Set-Cookie", "")
        self.cookie = cookie.split(";", 1)[0]
        if not self.cookie.startswith("ferry_console="):
            raise SystemExit(f"sign-in set no session cookie: {cookie!r}")
        self.who = json.loads(body)

    def get(self, path, **params):
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        self.conn.request("GET", f"{path}?{q}" if q else path, headers={"Cookie": self.cookie})
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"GET {path}?{q}: HTTP {r.status}: {body[:300]!r}")
        return json.loads(body)


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def wait_all(ecs, arns, status, timeout=300):
    deadline = time.time() + timeout
    left = set(arns)
    while left:
        if time.time() > deadline:
            raise SystemExit(f"{len(left)} tasks did not reach {status} in {timeout} s")
        for t in ecs.describe_tasks(cluster="default", tasks=sorted(left))["tasks"]:
            if t["lastStatus"] == status:
                left.discard(t["taskArn"])
            elif t["lastStatus"] == "STOPPED" and status != "STOPPED":
                raise SystemExit(f"task stopped: {t.get('stopCode')}: {t.get('stoppedReason')}")
        if left:
            time.sleep(0.3)


def run(ecs, family, count, net):
    r = ecs.run_task(cluster="default", taskDefinition=family, launchType="FARGATE",
                     platformVersion="1.4.0", count=count, networkConfiguration=net)
    if r.get("failures"):
        raise SystemExit(f"run-task failed: {r['failures']}")
    return [t["taskArn"] for t in r["tasks"]]


def make_records(srv, key_id, total, threads):
    """`total` Encrypt calls from `threads` threads; returns (seconds, calls)."""
    per = total // threads
    errors = []

    def work(t):
        try:
            c = Signed(srv, "kms", "TrentService")
            pt = base64.b64encode(b"console bench").decode()
            for i in range(per):
                c.call("Encrypt", {"KeyId": key_id, "Plaintext": pt,
                                   "EncryptionContext": {"bench": f"{t}-{i}"}})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t0 = time.monotonic()
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(f"Encrypt load failed: {errors[0]}")
    return time.monotonic() - t0, per * threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--running", type=int, default=3)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="ferry-bench-console-")
    # A task network of its own, apart from the e2e suites' defaults, in
    # case a test server runs beside the bench.
    srv = FerryServer(os.path.join(root, "data"),
                      extra_args=["--task-network", "ferry-bcon", "--task-subnet", "198.19.224.0/21"])
    srv.start()
    try:
        pid = srv.proc.pid
        import_httpd(srv, pathlib.Path(root))
        create_source_log_group(srv)
        ecs = srv.client("ecs")
        with open(SOURCE_TD) as f:
            ecs.register_task_definition(**json.load(f))
        ecs.register_task_definition(**TINY_TD)
        net = srv.network_configuration

        # 1. Tasks: a few RUNNING (the source document's app), the rest run
        # to completion ten at a time.
        t0 = time.monotonic()
        running = run(ecs, "fargate-task-definition", args.running, net)
        wait_all(ecs, running, "RUNNING")
        done = 0
        short = args.tasks - args.running
        while done < short:
            n = min(10, short - done)
            wait_all(ecs, run(ecs, "bench-tiny", n, net), "STOPPED")
            done += n
            if done % 100 == 0 or done == short:
                log(f"{done}/{short} short tasks run and stopped")
        tasks_secs = time.monotonic() - t0
        listed = sum(len(p["taskArns"]) for p in ecs.get_paginator("list_tasks").paginate(
            cluster="default", desiredStatus="STOPPED")) + len(running)
        log(f"{listed} tasks in the store ({args.running} RUNNING) after {tasks_secs:.0f} s")

        # 2. Audit records.
        kms = srv.client("kms")
        key_id = kms.create_key(Description="console bench")["KeyMetadata"]["KeyId"]
        rec_secs, calls = make_records(srv, key_id, args.records, args.threads)
        audit_path = os.path.join(srv.data_dir, "kms-audit.jsonl")
        with open(audit_path, "rb") as f:
            lines = sum(1 for _ in f)
        size = os.path.getsize(audit_path)
        log(f"{calls} Encrypt calls in {rec_secs:.0f} s ({calls / rec_secs:.0f}/s); "
            f"trail: {lines} records, {size / 2**20:.1f} MiB")

        # 3. The console.
        con = Console(srv)
        api = Signed(srv, "ecs", "AmazonEC2ContainerServiceV20141113")
        task_arn = running[0]
        task_id = task_arn.rsplit("/", 1)[1]

        rss0 = rss_kib(pid)
        cold, first = timed(lambda: con.get("/console/api/task", cluster="default", task=task_id))
        rss_index = rss_kib(pid)
        st = first["storage"]
        if not st or not st["encrypted"] or st["token"]["type"] != "ferry-kms":
            raise SystemExit(f"the task page shows no encrypted storage: {st}")
        names = sorted({r["eventName"] for r in first["audit"]})
        if not {"GenerateDataKeyWithoutPlaintext", "CreateGrant", "Decrypt"} <= set(names):
            raise SystemExit(f"the task page lacks the task's key calls: {names}")

        page_t, desc_t = [], []
        for i in range(args.samples):
            # Alternate which goes first, so both see the same noise.
            pair = [("page", lambda: con.get("/console/api/task", cluster="default", task=task_id)),
                    ("desc", lambda: api.call("DescribeTasks", {"cluster": "default", "tasks": [task_arn]}))]
            for name, f in (pair if i % 2 == 0 else pair[::-1]):
                s, out = timed(f)
                (page_t if name == "page" else desc_t).append(s)
                got = out["task"]["taskArn"] if name == "page" else out["tasks"][0]["taskArn"]
                if got != task_arn:
                    raise SystemExit(f"{name}: answered {got}, not {task_arn}")

        # The whole trail, 500 at a time.
        rss1 = rss_kib(pid)
        per_page, seen, before = [], 0, None
        while True:
            s, p = timed(lambda: con.get("/console/api/audit", limit=500, before=before))
            per_page.append(s)
            seen += len(p["records"])
            before = p["next"]
            if before is None:
                break
        rss2 = rss_kib(pid)
        if seen != lines:
            raise SystemExit(f"paging returned {seen} records, the file has {lines}")

        task_q = [timed(lambda: con.get("/console/api/audit", taskArn=task_arn, limit=100))
                  for _ in range(args.samples)]
        if not task_q[-1][1]["records"]:
            raise SystemExit("the task-filtered query found nothing")
        scan_q = [timed(lambda: con.get("/console/api/audit", eventName="RetireGrant", limit=100))[0]
                  for _ in range(10)]
        rss3 = rss_kib(pid)
        task_q = [s for s, _ in task_q]

        p50p, p50d = pct(page_t, 0.5), pct(desc_t, 0.5)
        print(f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, host: {os.cpu_count()} cores "
              f"(server, driver and its threads share them).\n")
        print(f"Setup: {listed} tasks in the store ({args.running} RUNNING, the source document's "
              f"definition; the rest `bench-tiny`, run to completion 10 at a time) in {tasks_secs:.0f} s; "
              f"{calls} KMS Encrypt calls from {args.threads} threads in {rec_secs:.0f} s "
              f"({calls / rec_secs:.0f}/s); the trail: {lines} records, {size / 2**20:.1f} MiB.\n")
        print("| measurement | p50 | p90 | n | note |")
        print("| --- | ---: | ---: | ---: | --- |")
        print(f"| GET /console/api/task (RUNNING task), first call | {ms(cold)} | - | 1 | "
              f"builds the task index: one scan of the {size / 2**20:.1f} MiB trail |")
        print(f"| GET /console/api/task (RUNNING task) | {ms(p50p)} | {ms(pct(page_t, 0.9))} | "
              f"{len(page_t)} | DescribeTasks + volume + the task's {len(first['audit'])} KMS records |")
        print(f"| DescribeTasks, same task, SigV4 (baseline) | {ms(p50d)} | {ms(pct(desc_t, 0.9))} | "
              f"{len(desc_t)} | |")
        print(f"| ratio task page / DescribeTasks (p50) | {p50p / p50d:.2f}x | "
              f"{pct(page_t, 0.9) / pct(desc_t, 0.9):.2f}x | | |")
        print(f"| audit page, limit 500, whole trail | {ms(pct(per_page, 0.5))} | {ms(pct(per_page, 0.9))} | "
              f"{len(per_page)} pages | {seen} records, total {sum(per_page):.2f} s |")
        print(f"| audit, taskArn filter, limit 100 | {ms(pct(task_q, 0.5))} | {ms(pct(task_q, 0.9))} | "
              f"{len(task_q)} | from the index |")
        print(f"| audit, eventName=RetireGrant, limit 100 | {ms(pct(scan_q, 0.5))} | {ms(pct(scan_q, 0.9))} | "
              f"{len(scan_q)} | a filter the index does not answer: the trail scanned backwards |")
        print()
        print("Server VmRSS (/proc/PID/status):\n")
        print("| when | VmRSS |")
        print("| --- | ---: |")
        for when, v in [("signed in, before the first task page", rss0),
                        ("after the first task page (task index built)", rss_index),
                        ("after the task page samples, before paging", rss1),
                        (f"after paging all {len(per_page)} pages", rss2),
                        ("after the filtered queries", rss3)]:
            print(f"| {when} | {v / 1024:.1f} MiB |")
        print()
        print(f"Target: task page p50 < 100 ms with {listed} tasks: "
              f"{'met' if p50p < 0.1 else 'NOT met'} ({ms(p50p)}).")
    finally:
        srv.stop(timeout=300)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
