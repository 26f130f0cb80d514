"""Driver for bench/restart.sh: how long a restarted `ferry server` takes
until N running tasks are re-adopted, next to a start with no tasks.

1. A server with no tasks is stopped (SIGTERM) and started R times: the
   seconds from starting the process to its "listening" line.
2. N tasks are started (an app that logs a line every 0.2 s), then the
   server is stopped (SIGTERM, without --stop-tasks-on-exit: the tasks stay)
   and started R times; each time, the seconds from starting the process
   until every task is verified: listening, RUNNING in DescribeTasks, a log
   line with a timestamp after the restart in its stream, and its metadata
   endpoint (169.254.170.2 inside the task's namespace) answering.
At the end the tasks are stopped and the server exits.
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import FerryServer, import_httpd  # noqa: E402

GROUP = "/bench/restart"
TD = {
    "family": "bench-restart", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
    "cpu": "256", "memory": "512",
    "containerDefinitions": [{
        "name": "app", "image": "httpd:2.4", "stopTimeout": 1,
        "entryPoint": ["sh", "-c"], "command": ["while true; do echo tick; sleep 0.2; done"],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": GROUP, "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "b", "awslogs-create-group": "true"}}}],
}


def timed_start(srv):
    """Starts the server; seconds until it printed its listening line."""
    t0 = time.time()
    srv.start()
    return t0, time.time() - t0


def verified(srv, ecs, logs, arns, since_ms):
    """The tasks not yet verified (see the module docs)."""
    left = []
    tasks = {t["taskArn"]: t for t in ecs.describe_tasks(tasks=arns)["tasks"]}
    for arn in arns:
        task_id = arn.rsplit("/", 1)[1]
        if tasks.get(arn, {}).get("lastStatus") != "RUNNING":
            left.append(arn)
            continue
        ev = logs.get_log_events(logGroupName=GROUP, logStreamName=f"b/app/{task_id}",
                                 startTime=since_ms, limit=1)["events"]
        if not ev:
            left.append(arn)
            continue
        md = subprocess.run(["ip", "netns", "exec", f"ferry-{task_id}", "curl", "-sf", "-m", "2",
                             f"http://169.254.170.2/v4/{task_id}-app/task"],
                            capture_output=True, text=True)
        if md.returncode != 0 or arn not in md.stdout:
            left.append(arn)
    return left


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ferry-bench-restart-")
    srv = FerryServer(os.path.join(root, "data"), stop_tasks_on_exit=False)
    arns = []
    try:
        srv.start()
        empty = []
        for _ in range(a.rounds):
            assert srv.stop() == 0
            empty.append(timed_start(srv)[1])
        import_httpd(srv, pathlib.Path(root))
        ecs, logs = srv.client("ecs"), srv.client("logs")
        ecs.register_task_definition(**TD)
        for _ in range(a.tasks):
            arns += [t["taskArn"] for t in ecs.run_task(
                taskDefinition="bench-restart", launchType="FARGATE", networkConfiguration=srv.network_configuration)["tasks"]]
        deadline = time.time() + 600
        while time.time() < deadline:
            ts = ecs.describe_tasks(tasks=arns)["tasks"]
            if all(t["lastStatus"] == "RUNNING" for t in ts):
                break
            assert not any(t["lastStatus"] == "STOPPED" for t in ts), [t.get("stoppedReason") for t in ts]
            time.sleep(0.5)
        else:
            sys.exit("the tasks did not all reach RUNNING")
        adopt, listen = [], []
        for _ in range(a.rounds):
            assert srv.stop() == 0
            t0, ready = timed_start(srv)
            ecs, logs = srv.client("ecs"), srv.client("logs")
            since = int(t0 * 1000)
            left = list(arns)
            while left:
                if time.time() - t0 > 300:
                    sys.exit(f"{len(left)} tasks were not re-adopted within 300 s")
                left = verified(srv, ecs, logs, left, since)
                if left:
                    time.sleep(0.1)
            adopt.append(time.time() - t0)
            listen.append(ready)
        print(f"\nbinary: {os.environ.get('FERRY_BIN')}; {a.tasks} tasks, {a.rounds} rounds, "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print("| measure | median s | min s | max s |")
        print("|---|---|---|---|")
        for name, xs in [("server start, no tasks (to listening)", empty),
                         (f"server start, {a.tasks} tasks (to listening)", listen),
                         (f"server start until all {a.tasks} re-adopted and verified", adopt)]:
            print(f"| {name} | {statistics.median(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} |")
    finally:
        try:
            if srv.proc and srv.proc.poll() is None:
                srv.stop_tasks_on_exit = True
                srv.restart()
            srv.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
