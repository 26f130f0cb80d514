"""EFS-style persistent file systems, end to end with the real AWS CLI.

`aws efs` creates a file system (a persistent LUKS2 volume under
DATA/efs/FS_ID whose data key is wrapped by the KMS) and an access point
with a PosixUser and a RootDirectory with CreationInfo. Tasks of different
task definitions mount it through `volumes[].efsVolumeConfiguration`: one
writes a file and stops, another reads it back; two running at once see
each other's writes; files written through the access point belong to its
PosixUser; readOnly mounts refuse writes; the backing file holds no
plaintext; a server restart keeps the data; deleting the file system is
refused while a task uses it and afterwards crypto-shreds it. A missing
file system, a deleted access point and a disabled key fail the task with
TaskFailedToStart and a reason naming which. Nothing is left on the host.

Containers are the busybox stand-in for httpd:2.4 running short `sh -c`
scripts whose exit code is the assertion; output goes to CloudWatch Logs
for the failure messages.
"""

import json
import os
import re
import subprocess
import time

import pytest

from conftest import FerryServer, allocated_data, host_resources, import_httpd, wait_stopped

GROUP = "/ecs/efs-e2e"
MARKER = "FERRY-EFS-PLAINTEXT-MARKER-7f3a9c1e"


def efs_volume(fs_id, ap_id=None, root=None):
    cfg = {"fileSystemId": fs_id}
    if ap_id:
        cfg["transitEncryption"] = "ENABLED"
        cfg["authorizationConfig"] = {"accessPointId": ap_id, "iam": "DISABLED"}
    if root:
        cfg["rootDirectory"] = root
    return {"name": "shared", "efsVolumeConfiguration": cfg}


def register(srv, tmp_path, family, script, volume, read_only=False):
    td = {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "volumes": [volume],
        "containerDefinitions": [{
            "name": "app",
            "image": "httpd:2.4",
            "essential": True,
            "entryPoint": ["sh", "-c"],
            "command": [script],
            "stopTimeout": 2,
            "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data", "readOnly": read_only}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": GROUP, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "efs",
                "awslogs-create-group": "true"}},
        }],
    }
    path = tmp_path / f"{family}.json"
    path.write_text(json.dumps(td))
    return srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}")["taskDefinition"]["taskDefinitionArn"]


STARTED = []  # task ids, to check nothing of them is left on the host


def run(srv, td_arn):
    out = srv.aws("ecs", "run-task", "--task-definition", td_arn, "--launch-type", "FARGATE",
                  "--network-configuration", srv.netcfg)
    assert out["failures"] == [], out
    arn = out["tasks"][0]["taskArn"]
    STARTED.append(arn.rsplit("/", 1)[1])
    return arn


def assert_nothing_left(data):
    after = host_resources()
    assert data not in after, "mounts or loop devices of the data dir left on the host"
    for tid in STARTED:
        assert tid not in after, f"resources of task {tid} left on the host"
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    left = [p for p in procs if data in p and "volume serve" in p]
    assert not left, f"volume servers left running: {left}"


def output(srv, arn):
    stream = f"efs/app/{arn.rsplit('/', 1)[1]}"
    r = srv.aws("logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", stream, check=False)
    if isinstance(r, Exception):
        return f"(no logs: {r})"
    return "\n".join(e["message"] for e in r.get("events", []))


def run_ok(srv, td_arn):
    """Runs a task to completion; its container must exit 0."""
    arn = run(srv, td_arn)
    t = wait_stopped(srv, arn)
    code = t["containers"][0].get("exitCode")
    assert t["stopCode"] == "EssentialContainerExited" and code == 0, (
        f"{t['stopCode']}: {t.get('stoppedReason')} exit {code}; output:\n{output(srv, arn)}\n"
        f"server log:\n{srv.log()[-2000:]}")
    return t


def run_fails(srv, td_arn):
    """Runs a task that must fail to start; returns its stoppedReason."""
    t = wait_stopped(srv, run(srv, td_arn))
    assert t["stopCode"] == "TaskFailedToStart", t
    return t["stoppedReason"]


def mounts_of(path):
    return [l for l in open("/proc/self/mountinfo").read().splitlines() if path in l]


def test_efs_persistent_encrypted_shared(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    data = srv.data_dir

    # -- create the file system and an access point -----------------------
    fs = srv.aws("efs", "create-file-system", "--creation-token", "e2e-1",
                 "--tags", "Key=Name,Value=e2e")
    fs_id = fs["FileSystemId"]
    assert re.fullmatch(r"fs-[0-9a-f]{17}", fs_id), fs
    assert fs["Encrypted"] is True and fs["LifeCycleState"] == "available" and fs["Name"] == "e2e"
    platform = srv.aws("kms", "describe-key", "--key-id", "alias/aws/ecs-ephemeral")["KeyMetadata"]["Arn"]
    assert fs["KmsKeyId"] == platform, fs
    err = srv.aws_error("efs", "create-file-system", "--creation-token", "e2e-1")
    assert err.code == "FileSystemAlreadyExists" and fs_id in err.message

    vol = os.path.join(data, "efs", fs_id, "volume.luks")
    st = os.stat(vol)
    assert st.st_size >= 100 << 30 and st.st_blocks * 512 < 64 << 20, "a new file system must be sparse"
    dump = subprocess.run(["cryptsetup", "luksDump", vol], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Version:\s+2", dump) and "aes-xts-plain64" in dump and "ferry-kms" in dump, dump
    token = json.loads(subprocess.run(["cryptsetup", "token", "export", "--token-id", "0", vol],
                                      capture_output=True, text=True, check=True).stdout)
    assert token["keyArn"] == platform
    assert token["encryptionContext"]["aws:elasticfilesystem:filesystem:id"] == fs_id

    ap = srv.aws("efs", "create-access-point", "--file-system-id", fs_id, "--client-token", "ap-1",
                 "--posix-user", "Uid=1000,Gid=1000",
                 "--root-directory", "Path=/app,CreationInfo={OwnerUid=1000,OwnerGid=1000,Permissions=0750}")
    ap_id = ap["AccessPointId"]
    via_ap = efs_volume(fs_id, ap_id)

    # -- task A writes through the access point and stops -----------------
    writer = register(srv, tmp_path, "efs-writer", (
        f"echo {MARKER} > /data/note.txt && sync && "
        # Through the idmapped access point the container's root owns its files.
        "test \"$(busybox stat -c %u:%g /data/note.txt)\" = 0:0"), via_ap)
    run_ok(srv, writer)
    assert not mounts_of(f"/efs/{fs_id}/"), "the file system stays mounted with no task using it"

    # -- task B (another task definition, no access point) reads it back --
    # On disk the file and the access point's directory belong to PosixUser
    # 1000:1000, the directory was created with CreationInfo's mode.
    reader = register(srv, tmp_path, "efs-reader", (
        f"test \"$(cat /data/app/note.txt)\" = {MARKER} && "
        "test \"$(busybox stat -c %u:%g /data/app/note.txt)\" = 1000:1000 && "
        "test \"$(busybox stat -c %u:%g:%a /data/app)\" = 1000:1000:750 && "
        # readOnly: writes are refused.
        "! busybox touch /data/app/ro-probe 2>/dev/null && test ! -e /data/app/ro-probe"),
        efs_volume(fs_id), read_only=True)
    run_ok(srv, reader)

    # -- no plaintext in the backing file ---------------------------------
    needle = MARKER.encode()
    assert not any(needle in chunk for chunk in allocated_data(vol)), "plaintext marker found in the backing file"

    # -- two concurrent tasks see each other's writes; delete is refused --
    def sharer(me, other):
        # Wait for the peer's file, then hold the mount until the test
        # releases both (so the delete below meets a file system in use).
        wait = "i=0; while [ ! -f /data/{f} ]; do i=$((i+1)); [ $i -gt 300 ] && exit 7; sleep 0.2; done"
        return (f"echo {me} > /data/{me} && {wait.format(f=other)} && "
                f"test \"$(cat /data/{other})\" = {other} && touch /data/saw-{other} && {wait.format(f='release')}")
    a = run(srv, register(srv, tmp_path, "efs-share-a", sharer("peer-a", "peer-b"), via_ap))
    b = run(srv, register(srv, tmp_path, "efs-share-b", sharer("peer-b", "peer-a"), efs_volume(fs_id, root="/app")))
    host_view = os.path.join(data, "efs", fs_id, "mnt", "app")
    deadline = time.time() + 90
    while not all(os.path.exists(os.path.join(host_view, f"saw-{p}")) for p in ("peer-a", "peer-b")):
        assert time.time() < deadline, f"the tasks did not see each other's writes:\n{output(srv, a)}\n{output(srv, b)}"
        time.sleep(0.2)
    assert len(mounts_of(f"/efs/{fs_id}/mnt ")) == 1, "the file system must be mounted once on the host"
    err = srv.aws_error("efs", "delete-file-system", "--file-system-id", fs_id)
    assert err.code == "FileSystemInUse", err.stderr
    open(os.path.join(host_view, "release"), "w").close()
    for arn in (a, b):
        t = wait_stopped(srv, arn)
        assert t["containers"][0].get("exitCode") == 0, f"{t.get('stoppedReason')}\n{output(srv, arn)}"
    assert os.path.exists(vol)

    # -- a server restart keeps the data ----------------------------------
    assert srv.restart() == 0
    assert not mounts_of(data), "the server left mounts behind at shutdown"
    run_ok(srv, reader)
    run_ok(srv, register(srv, tmp_path, "efs-peers", (
        "test \"$(cat /data/peer-a)\" = peer-a && test \"$(cat /data/peer-b)\" = peer-b"), via_ap))

    # -- failures name the missing file system / access point --------------
    reason = run_fails(srv, register(srv, tmp_path, "efs-nofs", "true", efs_volume("fs-0123456789abcdef0")))
    assert "fs-0123456789abcdef0" in reason and "does not exist" in reason, reason
    ap2 = srv.aws("efs", "create-access-point", "--file-system-id", fs_id, "--client-token", "ap-2")["AccessPointId"]
    gone_ap = register(srv, tmp_path, "efs-noap", "true", efs_volume(fs_id, ap2))
    srv.aws("efs", "delete-access-point", "--access-point-id", ap2)
    reason = run_fails(srv, gone_ap)
    assert ap2 in reason and "does not exist" in reason, reason

    # -- after the tasks stopped, delete crypto-shreds it -------------------
    srv.aws("efs", "delete-file-system", "--file-system-id", fs_id)
    assert not os.path.exists(os.path.join(data, "efs", fs_id)), "backing files left after delete"
    err = srv.aws_error("efs", "describe-file-systems", "--file-system-id", fs_id)
    assert err.code == "FileSystemNotFound"
    reason = run_fails(srv, reader)
    assert fs_id in reason, reason

    assert_nothing_left(data)


def test_efs_customer_key_disabled_and_unencrypted(ferry_server, tmp_path):
    """A file system under a customer-managed key: its data key is wrapped
    by that key; once the key is disabled, tasks fail to start with a
    reason naming the key. Encrypted=false gives a plain image."""
    srv = ferry_server
    import_httpd(srv, tmp_path)
    account = srv.aws("kms", "describe-key", "--key-id", "alias/aws/ecs-ephemeral")["KeyMetadata"]["AWSAccountId"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "fargate", "Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
         "Action": ["kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey"],
         "Resource": "*"}]})
    key = srv.aws("kms", "create-key", "--policy", policy)["KeyMetadata"]["Arn"]
    fs = srv.aws("efs", "create-file-system", "--creation-token", "cmk", "--kms-key-id", key)
    fs_id = fs["FileSystemId"]
    assert fs["KmsKeyId"] == key
    vol = os.path.join(srv.data_dir, "efs", fs_id, "volume.luks")
    token = json.loads(subprocess.run(["cryptsetup", "token", "export", "--token-id", "0", vol],
                                      capture_output=True, text=True, check=True).stdout)
    assert token["keyArn"] == key

    td = register(srv, tmp_path, "efs-cmk", f"echo {MARKER} > /data/x && test -s /data/x", efs_volume(fs_id))
    run_ok(srv, td)
    # The mount unwrapped the key through the KMS, audited.
    audit = srv.audit_text()
    assert fs_id in audit and "Decrypt" in audit

    srv.aws("kms", "disable-key", "--key-id", key)
    reason = run_fails(srv, td)
    assert fs_id in reason and key in reason and "Disabled" in reason, reason
    srv.aws("kms", "enable-key", "--key-id", key)
    run_ok(srv, td)
    srv.aws("kms", "schedule-key-deletion", "--key-id", key, "--pending-window-in-days", "7")
    reason = run_fails(srv, td)
    assert fs_id in reason and key in reason and "pending deletion" in reason.lower(), reason

    # A key that cannot be used refuses the create itself.
    err = srv.aws_error("efs", "create-file-system", "--creation-token", "cmk-2", "--kms-key-id", key)
    assert err.code == "BadRequest", err.stderr

    plain = srv.aws("efs", "create-file-system", "--creation-token", "plain", "--no-encrypted")
    assert plain["Encrypted"] is False and "KmsKeyId" not in plain
    assert os.path.isfile(os.path.join(srv.data_dir, "efs", plain["FileSystemId"], "volume.img"))
    run_ok(srv, register(srv, tmp_path, "efs-plain", "echo hi > /data/y && test -s /data/y",
                         efs_volume(plain["FileSystemId"])))
    srv.aws("efs", "delete-file-system", "--file-system-id", plain["FileSystemId"])
    srv.aws("efs", "delete-file-system", "--file-system-id", fs_id)
    assert os.listdir(os.path.join(srv.data_dir, "efs")) == []
    assert_nothing_left(srv.data_dir)


def test_efs_unencrypted_refused_when_encryption_required(tmp_path):
    srv = FerryServer(str(tmp_path / "data"), extra_args=["--require-encrypted-storage"])
    srv.start()
    try:
        err = srv.aws_error("efs", "create-file-system", "--creation-token", "p", "--no-encrypted")
        assert err.code == "BadRequest" and "encrypted" in err.message, err.stderr
        assert srv.aws("efs", "describe-file-systems")["FileSystems"] == []
        fs = srv.aws("efs", "create-file-system", "--creation-token", "e")
        assert fs["Encrypted"] is True
        srv.aws("efs", "delete-file-system", "--file-system-id", fs["FileSystemId"])
    finally:
        assert srv.stop() == 0
