"""A full disk is an error, not a disaster: ferry's data directory on a
300 MB file system (a loop-mounted ext4 image made here).

- By default RunTask refuses a 20 GiB task there, in `failures` with
  RESOURCE:EPHEMERAL_STORAGE and a detail naming free space and size.
- With `--storage-overcommit 200` it runs; the task writes 1.5 GB with dd
  and gets ENOSPC (not EIO), its file system stays writable (no journal
  abort, no read-only remount), the server keeps answering (DescribeTasks,
  KMS, a clean RunTask refusal), and the task stops promptly.
- With the disk filled to the last block by something else, calls that
  must write answer AWS-shaped errors naming the full disk, reads keep
  working, and once the filler is deleted the store and the KMS audit
  trail work again without a restart.

On PostgreSQL (FERRY_E2E_STORE=postgresql) the server's cluster lives on
the small disk too, so "the store" and "the audit trail" (a table there)
are the database's, and the full disk is the database's.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from botocore.exceptions import ClientError

from conftest import FerryServer, import_httpd, wait_status, wait_stopped

GROUP = "/ecs/full-disk"
# Writes 1.5 GB, reports how dd ended, then checks the file system still
# takes writes once the big file is gone (a journal abort would make it
# read-only), then idles until stopped.
SCRIPT = (
    "dd if=/dev/zero of=/big bs=1M count=1500 conv=fsync 2>&1 | tail -n 3; "
    "echo dd-status=$?; "
    "rm -f /big; sync; "
    "if echo hello > /after && sync && grep -q hello /after; then echo fs-still-writable; "
    "else echo fs-broken; fi; "
    "grep ' / ' /proc/mounts | head -n 1; "
    "echo script-done; sleep 3600"
)


def need(tool):
    if not shutil.which(tool):
        pytest.fail(f"{tool} is required for this test", pytrace=False)


@pytest.fixture
def small_disk():
    """A 300 MB ext4 file system, loop-mounted; unmounted and removed after."""
    for t in ("mkfs.ext4", "mount", "umount"):
        need(t)
    root = tempfile.mkdtemp(prefix="ferry-fulldisk-")
    img, mnt = os.path.join(root, "disk.img"), os.path.join(root, "mnt")
    os.mkdir(mnt)
    with open(img, "wb") as f:
        f.truncate(300 * 1000 * 1000)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    # A PostgreSQL cluster on the disk runs as postgres, which must be able
    # to reach its directory there.
    os.chmod(root, 0o711)
    os.chmod(mnt, 0o711)
    try:
        yield root, mnt
    finally:
        r = subprocess.run(["umount", mnt], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", mnt])
        shutil.rmtree(root, ignore_errors=True)


def start_server(root, mnt, extra):
    # With PostgreSQL, its cluster is on the small disk as well.
    srv = FerryServer(os.path.join(mnt, "data"), extra_args=extra, pg_dir=mnt)
    # The server's own log stays off the small disk.
    srv.log_path = os.path.join(root, "server.log")
    srv.start()
    return srv


def register(srv, tmp_path):
    srv.aws("logs", "create-log-group", "--log-group-name", GROUP, check=False)
    td = {
        "family": "filler", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{
            "name": "app", "image": "httpd:2.4", "essential": True, "stopTimeout": 2,
            "entryPoint": ["sh", "-c"], "command": [SCRIPT],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": GROUP, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "fd"}},
        }],
    }
    p = tmp_path / "td.json"
    p.write_text(json.dumps(td))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")


def run(srv):
    return srv.aws("ecs", "run-task", "--task-definition", "filler", "--launch-type", "FARGATE",
                   "--network-configuration", srv.netcfg)


def output(srv, arn):
    stream = f"fd/app/{arn.rsplit('/', 1)[1]}"
    r = srv.aws("logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", stream,
                "--start-from-head", check=False)
    if isinstance(r, Exception) or not isinstance(r, dict):
        return ""
    return "\n".join(e["message"] for e in r.get("events", []))


def wait_output(srv, arn, marker, timeout=240):
    deadline = time.time() + timeout
    out = ""
    while time.time() < deadline:
        out = output(srv, arn)
        if marker in out:
            return out
        t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
        if t["lastStatus"] == "STOPPED":
            pytest.fail(f"task stopped early: {t.get('stoppedReason')}\n{out}\n{srv.log()[-3000:]}",
                        pytrace=False)
        time.sleep(1)
    pytest.fail(f"no {marker!r} in the task's output after {timeout}s:\n{out}\n{srv.log()[-3000:]}",
                pytrace=False)


def fill(path):
    """Writes zeros to `path` until the file system is full."""
    d = os.path.dirname(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            buf = b"\0" * size
            try:
                while True:
                    os.write(fd, buf)
            except OSError:
                pass
        try:
            os.fsync(fd)
        except OSError:
            pass
    finally:
        os.close(fd)
    st = os.statvfs(d)
    assert st.f_bavail * st.f_frsize < (1 << 20), f"{st.f_bavail * st.f_frsize} bytes still free"


def test_default_refuses_20_gib_on_a_300_mb_disk(small_disk, tmp_path):
    root, mnt = small_disk
    srv = start_server(root, mnt, [])
    try:
        import_httpd(srv, tmp_path)
        register(srv, tmp_path)
        r = run(srv)
        assert r["tasks"] == [], r
        f = r["failures"]
        assert len(f) == 1 and f[0]["reason"] == "RESOURCE:EPHEMERAL_STORAGE", r
        assert ":cluster/default" in f[0]["arn"], f
        assert "cannot back 20 GiB of ephemeral storage" in f[0]["detail"], f
        assert "MiB free" in f[0]["detail"], f
        # Nothing was recorded or left behind.
        assert srv.aws("ecs", "list-tasks")["taskArns"] == []
        assert not os.listdir(os.path.join(srv.data_dir, "tasks"))
    finally:
        assert srv.close() == 0


def test_enospc_in_the_task_and_the_server_survives_a_full_disk(small_disk, tmp_path):
    root, mnt = small_disk
    srv = start_server(root, mnt, ["--storage-overcommit", "200"])
    try:
        import_httpd(srv, tmp_path)
        register(srv, tmp_path)
        r = run(srv)
        assert r["failures"] == [], r
        arn = r["tasks"][0]["taskArn"]
        wait_status(srv, arn, "RUNNING", timeout=120)

        out = wait_output(srv, arn, "script-done")
        assert "No space left on device" in out, out
        assert "Input/output error" not in out, out
        assert "dd-status=" in out, out
        assert "fs-still-writable" in out, out
        assert "fs-broken" not in out, out
        # The reserve is kept: the volume stopped short of filling the host.
        st = os.statvfs(mnt)
        assert st.f_bavail * st.f_frsize >= 4 << 20, f"only {st.f_bavail * st.f_frsize} bytes left"

        # The server keeps answering while the task holds the disk.
        t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
        assert t["lastStatus"] == "RUNNING", t
        key = srv.aws("kms", "create-key")["KeyMetadata"]["KeyId"]
        srv.aws("kms", "encrypt", "--key-id", key, "--plaintext", "aGVsbG8=")
        r2 = run(srv)
        assert r2["tasks"] == [] and r2["failures"][0]["reason"] == "RESOURCE:EPHEMERAL_STORAGE", r2

        # Stopping it is prompt, and it is shredded.
        task_id = arn.rsplit("/", 1)[1]
        t0 = time.time()
        srv.aws("ecs", "stop-task", "--task", arn)
        t = wait_stopped(srv, arn, timeout=60)
        took = time.time() - t0
        assert took < 30, f"the task took {took:.1f}s to stop"
        assert not os.path.exists(os.path.join(srv.data_dir, "tasks", task_id))

        # Something else fills the disk to the last block.
        filler = os.path.join(mnt, "filler")
        fill(filler)
        try:
            # redb (and PostgreSQL) reuse free pages of their files, so a few small commits
            # may still fit: write until the store needs to grow.
            ecs, kms = srv.client("ecs"), srv.client("kms")
            big_env = [{"name": f"V{i}", "value": "x" * 1000} for i in range(50)]
            err = None
            for i in range(400):
                try:
                    ecs.register_task_definition(
                        family=f"while-full-{i}", networkMode="awsvpc", cpu="256", memory="512",
                        requiresCompatibilities=["FARGATE"], containerDefinitions=[
                            {"name": "c", "image": "httpd:2.4", "memory": 64, "environment": big_env}])
                except ClientError as e:
                    err = e.response
                    break
            assert err, "the store never failed on a full disk"
            assert err["Error"]["Code"] in ("ServerException", "ServiceUnavailableException"), err
            assert "full" in err["Error"]["Message"], err
            assert err["ResponseMetadata"]["HTTPStatusCode"] in (500, 503), err
            err = None
            for i in range(200):
                try:
                    kms.encrypt(KeyId=key, Plaintext=b"x" * 4096)
                except ClientError as e:
                    err = e.response
                    break
            assert err, "the audit trail never failed on a full disk"
            assert err["Error"]["Code"] == "KMSInternalException", err
            assert "full" in err["Error"]["Message"], err
            # Reads keep working.
            t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
            assert t["lastStatus"] == "STOPPED"
            # RunTask answers a clean, shaped refusal (never an unshaped 500).
            r3 = srv.aws("ecs", "run-task", "--task-definition", "filler", "--launch-type", "FARGATE",
                         "--network-configuration", srv.netcfg, check=False)
            if isinstance(r3, Exception):
                assert r3.code, r3.stderr
            else:
                assert r3["tasks"] == [] and r3["failures"], r3
        finally:
            os.unlink(filler)

        # Space is back: the store and the audit trail work without a restart.
        srv.aws("ecs", "create-cluster", "--cluster-name", "after-full")
        assert srv.aws("ecs", "describe-clusters", "--clusters", "after-full")["clusters"][0]["status"] == "ACTIVE"
        srv.client("ecs").register_task_definition(
            family="after-full", networkMode="awsvpc", cpu="256", memory="512",
            requiresCompatibilities=["FARGATE"], containerDefinitions=[
                {"name": "c", "image": "httpd:2.4", "memory": 64, "environment": big_env}])
        srv.aws("kms", "encrypt", "--key-id", key, "--plaintext", "aGVsbG8=")
        lines = srv.audit_lines()
        for line in lines:
            json.loads(line)
        assert any('"Encrypt"' in l for l in lines[-3:]), lines[-3:]
    finally:
        assert srv.close() == 0
