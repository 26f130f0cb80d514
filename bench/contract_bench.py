"""Driver for bench/contract.sh: what the task contract costs at start-up.

One server; tasks one at a time, the two task definitions alternating:
`single` (one container, as bench/task.sh) and `contract` (init with
SUCCESS, app with a CMD-SHELL health check and awslogs, a sidecar that
dependsOn the app HEALTHY). RunTask to DescribeTasks RUNNING (polled every
5 ms): RUNNING needs the essential app running, so the init container's
whole run is inside the measured time; the sidecar starts later, once the
app is HEALTHY, and is not. Reported: p50/p99 per definition and the ratio
of the p50s.
"""
import argparse
import os
import pathlib
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from conftest import FerryServer, import_httpd  # noqa: E402
from task_bench import START_TD, alternating_starts, pct  # noqa: E402

LOGS = {"logDriver": "awslogs", "options": {"awslogs-group": "/bench/contract", "awslogs-region": "us-east-1",
                                            "awslogs-stream-prefix": "b", "awslogs-create-group": "true"}}
CONTRACT_TD = {
    "family": "bench-contract", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
    "cpu": "256", "memory": "512",
    "containerDefinitions": [
        {"name": "init", "image": "httpd:2.4", "essential": False, "logConfiguration": LOGS,
         "entryPoint": ["sh", "-c"], "command": ["echo init-done"]},
        {"name": "app", "image": "httpd:2.4", "stopTimeout": 1, "logConfiguration": LOGS,
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
         "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5, "retries": 2},
         "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]},
        {"name": "sidecar", "image": "httpd:2.4", "essential": False, "stopTimeout": 1, "logConfiguration": LOGS,
         "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}],
         "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]},
    ],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20, help="tasks per definition")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ferry-bench-contract-", dir="/var/tmp")
    srv = FerryServer(os.path.join(root, "data"))
    fam = {"single": "bench-start", "contract": "bench-contract"}
    try:
        srv.start()
        import_httpd(srv, pathlib.Path(root))
        ecs = srv.client("ecs")
        ecs.register_task_definition(**START_TD)
        ecs.register_task_definition(**CONTRACT_TD)
        print(f"host: {os.cpu_count()} cores, {os.uname().release}, load average before: "
              f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
        lat = alternating_starts(ecs, fam, a.tasks)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nRunTask to RUNNING, {a.tasks} tasks each, one at a time, alternating (1.4.0, 20 GiB volume):")
    print("| task definition | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for kind, what in [("single", "one container"),
                       ("contract", "init (SUCCESS) + app (health check) + sidecar (HEALTHY), awslogs")]:
        print(f"| {what} | {pct(lat[kind], 0.5) * 1000:.0f} | {pct(lat[kind], 0.99) * 1000:.0f} |")
    print(f"ratio of p50, contract / single: {pct(lat['contract'], 0.5) / pct(lat['single'], 0.5):.2f}")


if __name__ == "__main__":
    main()
