"""PENDING: the RunTask -> RUNNING -> STOPPED flow with the real runtime.

This file is deliberately not named test_*.py, so pytest does not collect
it: on branch `ecs` no task runtime is wired into `ferry server` (tasks fail
to start with "no task runtime is configured in this ferry server"). Once the
agent + encrypted volume runtime is plugged into `ecs_service()` in
crates/ferry/src/cli/server.rs, rename this file to test_ecs_run.py.

It runs the source document's task definition with the source document's
run-task flags (plus --endpoint-url), waits for RUNNING, checks every field
the ECS issue names, fetches the page the container serves, stops the task
and checks STOPPED. The image `httpd:2.4` is a tiny stand-in built here from
busybox-static: `sh -c "... && httpd-foreground"` works as in the real
httpd image (httpd-foreground runs busybox httpd on port 80).
"""

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_TD = os.path.join(HERE, "data", "fargate-task-definition.json")
BUSYBOX = "/bin/busybox"  # busybox-static (scripts/setup installs it)
NETCFG = "awsvpcConfiguration={subnets=[subnet-12345678],securityGroups=[sg-12345678]}"


def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_httpd_image(path):
    """An OCI archive standing in for httpd:2.4: busybox as /bin/sh and an
    httpd-foreground script serving /usr/local/apache2/htdocs on :80."""
    if not os.access(BUSYBOX, os.X_OK):
        pytest.fail(f"{BUSYBOX} is missing: install busybox-static (scripts/setup)", pytrace=False)
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        def add_dir(name):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)

        def add_file(name, data, mode=0o755):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), mode
            t.addfile(ti, io.BytesIO(data))

        for d in ("bin", "usr", "usr/local", "usr/local/bin", "usr/local/apache2",
                  "usr/local/apache2/htdocs", "tmp", "etc"):
            add_dir(d)
        with open(BUSYBOX, "rb") as f:
            add_file("bin/busybox", f.read())
        for applet in ("sh", "echo", "cat", "sleep", "httpd"):
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(ti)
        add_file("usr/local/bin/httpd-foreground",
                 b"#!/bin/sh\nexec /bin/busybox httpd -f -p 80 -h /usr/local/apache2/htdocs\n")
        add_file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", 0o644)
    raw = layer.getvalue()
    gz = gzip.compress(raw, mtime=0)
    layout = path + ".d"
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    layer_desc = _blob(layout, gz)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/bin"], "Cmd": ["httpd-foreground"],
                   "WorkingDir": "/usr/local/apache2"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
    }
    config_desc = _blob(layout, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_desc}]}
    manifest_desc = _blob(layout, json.dumps(manifest).encode())
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_desc,
            "annotations": {"org.opencontainers.image.ref.name": "2.4"}}]}, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with tarfile.open(path, "w") as t:
        for name in ("oci-layout", "index.json", "blobs"):
            t.add(os.path.join(layout, name), arcname=name)
    shutil.rmtree(layout)
    return path


def import_image(srv, tmp_path):
    archive = build_httpd_image(str(tmp_path / "httpd.oci.tar"))
    p = subprocess.run([os.environ["FERRY_BIN"], "image", "import", archive, "--name", "httpd:2.4",
                        "--data-dir", srv.data_dir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"ferry image import failed: {p.stderr}"


def wait_for(srv, cluster, arn, status, timeout=120):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        t = srv.aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn)["tasks"][0]
        if not seen or seen[-1] != t["lastStatus"]:
            seen.append(t["lastStatus"])
        if t["lastStatus"] == status:
            return t, seen
        if t["lastStatus"] == "STOPPED":
            pytest.fail(f"task stopped before {status}: {t.get('stopCode')}: {t.get('stoppedReason')}")
        time.sleep(0.5)
    pytest.fail(f"task did not reach {status} in {timeout}s (statuses seen: {seen})")


ORDER = ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING",
         "DEPROVISIONING", "STOPPED"]


def test_source_document_run_task_to_running_and_stopped(ferry_server, tmp_path):
    srv = ferry_server
    import_image(srv, tmp_path)
    srv.aws("ecs", "create-cluster", "--cluster-name", "payments")
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    # The source document's command, with --endpoint-url (added by srv.aws).
    out = srv.aws("ecs", "run-task", "--cluster", "payments",
                  "--task-definition", "fargate-task-definition:1",
                  "--count", "1", "--launch-type", "FARGATE",
                  "--platform-version", "1.4.0",
                  "--network-configuration", NETCFG,
                  "--region", "us-east-1")
    assert out["failures"] == []
    arn = out["tasks"][0]["taskArn"]
    assert re.fullmatch(r"arn:aws:ecs:us-east-1:\d{12}:task/payments/[0-9a-f]{32}", arn)

    t, seen = wait_for(srv, "payments", arn, "RUNNING")
    assert seen == sorted(seen, key=ORDER.index), seen
    assert t["desiredStatus"] == "RUNNING"
    assert t["platformVersion"] == "1.4.0"
    assert t["ephemeralStorage"] == {"sizeInGiB": 20}
    assert t["fargateEphemeralStorage"] == {"sizeInGiB": 20}  # platform key: no kmsKeyId
    for k in ("createdAt", "pullStartedAt", "pullStoppedAt", "startedAt", "connectivityAt"):
        assert k in t, f"{k} missing"
    eni = t["attachments"][0]
    assert eni["type"] == "ElasticNetworkInterface" and eni["status"] == "ATTACHED"
    ip = {d["name"]: d["value"] for d in eni["details"]}["privateIPv4Address"]
    assert ip.startswith("198.18."), ip
    c = t["containers"][0]
    assert c["name"] == "sample-fargate-app" and c["lastStatus"] == "RUNNING"
    assert c["networkBindings"] == [{"bindIP": ip, "containerPort": 80, "hostPort": 80, "protocol": "tcp"}]
    assert arn in srv.aws("ecs", "list-tasks", "--cluster", "payments")["taskArns"]
    cl = srv.aws("ecs", "describe-clusters", "--clusters", "payments")["clusters"][0]
    assert cl["runningTasksCount"] == 1

    # The page the source document's command wrote is served from the task's address.
    body = urllib.request.urlopen(f"http://{ip}/", timeout=10).read().decode()
    assert "Payment Processing Web Interface" in body

    srv.aws("ecs", "stop-task", "--cluster", "payments", "--task", arn, "--reason", "end of e2e test")
    t, seen = wait_for(srv, "payments", arn, "STOPPED")
    assert t["desiredStatus"] == "STOPPED"
    assert t["stopCode"] == "UserInitiated"
    assert t["stoppedReason"] == "end of e2e test"
    assert t["containers"][0]["lastStatus"] == "STOPPED"
    assert "exitCode" in t["containers"][0]
    assert t["startedAt"] <= t["stoppingAt"] <= t["executionStoppedAt"] <= t["stoppedAt"]
    assert t["attachments"][0]["status"] == "DELETED"
    assert arn in srv.aws("ecs", "list-tasks", "--cluster", "payments", "--desired-status", "STOPPED")["taskArns"]


def test_failure_to_start_and_essential_exit(ferry_server, tmp_path):
    srv = ferry_server
    import_image(srv, tmp_path)
    doc = json.load(open(SOURCE_TD))
    doc["family"] = "exits"
    doc["containerDefinitions"][0]["command"] = ["exit 3"]
    p = tmp_path / "exits.json"
    p.write_text(json.dumps(doc))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    arn = srv.aws("ecs", "run-task", "--task-definition", "exits", "--launch-type", "FARGATE",
                  "--network-configuration", NETCFG)["tasks"][0]["taskArn"]
    deadline = time.time() + 120
    while time.time() < deadline:
        t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
        if t["lastStatus"] == "STOPPED":
            break
        time.sleep(0.5)
    assert t["lastStatus"] == "STOPPED"
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["containers"][0]["exitCode"] == 3

    doc["family"] = "noimage"
    doc["containerDefinitions"][0]["image"] = "httpd:9"
    p.write_text(json.dumps(doc))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    arn = srv.aws("ecs", "run-task", "--task-definition", "noimage", "--launch-type", "FARGATE",
                  "--network-configuration", NETCFG)["tasks"][0]["taskArn"]
    deadline = time.time() + 60
    while time.time() < deadline:
        t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
        if t["lastStatus"] == "STOPPED":
            break
        time.sleep(0.5)
    assert t["stopCode"] == "TaskFailedToStart"
    assert "httpd:9" in t["stoppedReason"]
    assert "startedAt" not in t
