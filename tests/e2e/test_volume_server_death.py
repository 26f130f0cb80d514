"""A dead volume server stops its task: `kill -9` of a task's
`ferry volume serve` (found by the task's image path in its arguments)
stops the task within seconds with stopCode TerminationNotice and a
stoppedReason naming the storage failure; the image is shredded, the KMS
grant retired, nothing of the volume is left on the host, and a service
replaces its task.
"""

import json
import os
import signal
import time

import pytest

from conftest import import_httpd, pids_with_args, wait_status, wait_stopped

TD = {
    "family": "sleeper", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
    "cpu": "256", "memory": "512",
    "containerDefinitions": [{
        "name": "app", "image": "httpd:2.4", "essential": True, "stopTimeout": 2,
        "entryPoint": ["sh", "-c"], "command": ["while true; do date > /tick; sleep 0.2; done"],
    }],
}


@pytest.fixture
def srv(ferry_server, tmp_path):
    import_httpd(ferry_server, tmp_path)
    p = tmp_path / "td.json"
    p.write_text(json.dumps(TD))
    ferry_server.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    return ferry_server


def volume_server_pid(data_dir, task_id):
    """The pid of the `ferry volume serve` serving the task's image."""
    image = os.path.join(data_dir, "tasks", task_id, "volume.luks")
    pids = pids_with_args("volume", "serve", image)
    if not pids:
        pytest.fail(f"no volume server for {image}", pytrace=False)
    return pids[0]


def kill_and_expect_stop(srv, arn):
    task_id = arn.rsplit("/", 1)[1]
    task_dir = os.path.join(srv.data_dir, "tasks", task_id)
    grant = json.load(open(os.path.join(task_dir, "grant.json")))
    pid = volume_server_pid(srv.data_dir, task_id)
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    t = wait_stopped(srv, arn, timeout=30)
    took = time.time() - t0
    assert took < 10, f"the task took {took:.1f}s to stop after its volume server died"
    assert t["stopCode"] == "TerminationNotice", t
    assert "ephemeral storage failed" in t["stoppedReason"], t["stoppedReason"]
    assert "volume server" in t["stoppedReason"], t["stoppedReason"]
    # Released: shredded (the directory with the image is gone), no mount
    # or loop device of it, the grant retired.
    assert not os.path.exists(task_dir), os.listdir(task_dir)
    assert task_id not in open("/proc/self/mountinfo").read()
    grants = srv.aws("kms", "list-grants", "--key-id", grant["keyArn"])["Grants"]
    assert grant["grantId"] not in [g["GrantId"] for g in grants], grants
    return t


def test_a_killed_volume_server_stops_its_task(srv):
    r = srv.aws("ecs", "run-task", "--task-definition", "sleeper", "--launch-type", "FARGATE",
                "--network-configuration", srv.netcfg)
    arn = r["tasks"][0]["taskArn"]
    wait_status(srv, arn, "RUNNING")
    kill_and_expect_stop(srv, arn)
    # The server is fine: the next task runs.
    r = srv.aws("ecs", "run-task", "--task-definition", "sleeper", "--launch-type", "FARGATE",
                "--network-configuration", srv.netcfg)
    arn2 = r["tasks"][0]["taskArn"]
    wait_status(srv, arn2, "RUNNING")
    srv.aws("ecs", "stop-task", "--task", arn2)
    t = wait_stopped(srv, arn2)
    assert t["stopCode"] == "UserInitiated", t


def test_a_service_replaces_a_task_whose_volume_server_died(srv):
    srv.aws("ecs", "create-service", "--service-name", "vs", "--task-definition", "sleeper",
            "--desired-count", "1", "--launch-type", "FARGATE", "--network-configuration", srv.netcfg)

    def running():
        arns = srv.aws("ecs", "list-tasks", "--service-name", "vs", "--desired-status", "RUNNING")["taskArns"]
        if not arns:
            return []
        return [t for t in srv.aws("ecs", "describe-tasks", "--tasks", *arns)["tasks"]
                if t["lastStatus"] == "RUNNING"]

    deadline = time.time() + 90
    while not running() and time.time() < deadline:
        time.sleep(0.5)
    first = running()
    assert len(first) == 1, first
    arn = first[0]["taskArn"]
    kill_and_expect_stop(srv, arn)
    deadline = time.time() + 90
    replacement = []
    while time.time() < deadline:
        replacement = [t for t in running() if t["taskArn"] != arn]
        if replacement:
            break
        time.sleep(0.5)
    assert replacement, "the service did not replace its task"
    srv.aws("ecs", "delete-service", "--service", "vs", "--force")
    wait_stopped(srv, replacement[0]["taskArn"])
