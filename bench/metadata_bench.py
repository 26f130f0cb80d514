"""Driver for bench/metadata.sh.

Starts a release `ferry server`, runs one task (the busybox httpd stand-in
sleeping), and runs `metadata_load` (crates/metadata/examples) inside the
task's network namespace with `ip netns exec ferry-TASK_ID`, so requests
take the path a container's do (its namespace's lo, 169.254.170.2:80).
Each URL is measured `--rounds` times, interleaved with the baseline; the
median round is reported.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from conftest import FerryServer, import_httpd  # noqa: E402
from task_bench import NET  # noqa: E402
TD = {
    "family": "bench-metadata", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
    "cpu": "256", "memory": "512",
    "containerDefinitions": [{"name": "app", "image": "httpd:2.4", "stopTimeout": 1,
                              "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]}],
}


class P:
    """tmp_path stand-in for import_httpd."""

    def __init__(self, d):
        self.d = d

    def __truediv__(self, name):
        import pathlib
        return pathlib.Path(self.d) / name


def load(netns, url, conns, secs):
    out = subprocess.run(["ip", "netns", "exec", netns, os.environ["LOAD_BIN"], "--url", url,
                          "--connections", str(conns), "--seconds", str(secs)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ferry-bench-md-")
    srv = FerryServer(os.path.join(root, "data"))
    srv.start()
    try:
        import_httpd(srv, P(root))
        ecs = srv.client("ecs")
        ecs.register_task_definition(**TD)
        arn = ecs.run_task(taskDefinition="bench-metadata", launchType="FARGATE",
                           networkConfiguration=NET)["tasks"][0]["taskArn"]
        while True:
            t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
            if t["lastStatus"] == "RUNNING":
                break
            if t["lastStatus"] == "STOPPED":
                sys.exit(f"task stopped: {t.get('stoppedReason')}")
            time.sleep(0.1)
        task_id = arn.rsplit("/", 1)[1]
        netns = f"ferry-{task_id}"
        base = f"http://169.254.170.2/v4/{task_id}-app"
        urls = [("baseline (404)", base + "/nope"), ("container", base), ("task", base + "/task"),
                ("task/stats", base + "/task/stats")]
        runs = {name: [] for name, _ in urls}
        for _ in range(a.rounds):
            for name, url in urls:
                runs[name].append(load(netns, url, a.connections, a.seconds))
        print(f"| endpoint | req/s | p50 ms | p99 ms | max ms | status |  ({a.connections} connections, "
              f"{a.seconds} s x {a.rounds} rounds, median round by req/s)")
        print("|---|---|---|---|---|---|")
        for name, _ in urls:
            rs = sorted(runs[name], key=lambda r: r["rps"])
            m = rs[len(rs) // 2]
            print(f"| {name} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['max_ms']:.1f} "
                  f"| {m['codes']} |")
            print(f"<!-- {name} rounds: {[round(r['rps']) for r in runs[name]]} "
                  f"p99 {[r['p99_ms'] for r in runs[name]]} -->")
        ecs.stop_task(task=arn)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
