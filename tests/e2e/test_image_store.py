"""The host's image store, sealed at rest (docs/images.md).

`ferry image` reaches the running server over its admin socket; every
blob (manifest, config, layers) is sealed under a data key the KMS issues
to Fargate under the platform key, with the image store's context; a task
runs from it; the image's bytes are nowhere on the host disk in plaintext.
The store's size limit collects the least recently used image no task
uses, and never one a running task uses.
"""
import json
import os
import subprocess
import tempfile
import uuid

from conftest import (MAKE_IMAGE, SOURCE_TD, allocated_data, create_source_log_group, ferry_bin,
                      FerryServer, private_ip, state_files, task_page, wait_status)


def build(tmp_path, name, marker):
    """A stand-in httpd image in `docker save` form (its layer is an
    uncompressed tar, so the marker is in the archive in plaintext)."""
    archive = tmp_path / f"{name.replace(':', '-')}.tar"
    subprocess.run(["python3", MAKE_IMAGE, "--format", "docker", "--name", name,
                    "--marker", marker, str(archive)], check=True)
    assert marker.encode() in archive.read_bytes(), "the archive should hold the marker in plaintext"
    return archive


def image(srv, *args, check=True):
    p = subprocess.run([ferry_bin(), "image", *args, "--data-dir", srv.data_dir],
                       capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, f"ferry image {args}: {p.stderr}"
    return p


def run_task(srv, tmp_path, family, image_name):
    doc = json.load(open(SOURCE_TD))
    doc["family"] = family
    doc["containerDefinitions"][0]["image"] = image_name
    p = tmp_path / f"{family}.json"
    p.write_text(json.dumps(doc))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    arn = srv.aws("ecs", "run-task", "--task-definition", family, "--launch-type", "FARGATE",
                  "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]
    t, _ = wait_status(srv, arn, "RUNNING")
    return arn, t


def test_images_are_sealed_at_rest_and_served_through_the_admin_socket(ferry_server, tmp_path):
    srv = ferry_server
    marker = f"ferry-image-marker-{uuid.uuid4().hex}"
    archive = build(tmp_path, "httpd:2.4", marker)
    out = image(srv, "import", str(archive), "--name", "httpd:2.4").stdout
    assert out.startswith("httpd:2.4\tsha256:"), out
    digest = out.split("\t")[1].strip()

    create_source_log_group(srv)
    arn, t = run_task(srv, tmp_path, "sealed-image", "httpd:2.4")
    body = task_page(private_ip(t), "/marker.html")
    assert body.strip() == marker

    # No byte of the image in plaintext anywhere on the disk under the data
    # dir: not in images/, not in upload files, not in the state store.
    scanned = 0
    for p in state_files(srv):
        for chunk in allocated_data(p):
            scanned += len(chunk)
            assert marker.encode() not in chunk, f"plaintext marker in {p}"
    assert scanned > 1 << 20, "the scan read almost nothing"
    blobs = os.path.join(srv.data_dir, "images", "blobs", "sha256")
    sealed = os.listdir(blobs)
    assert sealed and all(open(os.path.join(blobs, b), "rb").read(4) == b"FSB1" for b in sealed)

    # Every blob's data key: GenerateDataKey as Fargate under the platform
    # key with the image store's context; reads are Decrypts, all audited.
    platform = srv.aws("kms", "describe-key", "--key-id", "alias/aws/ecs-ephemeral")["KeyMetadata"]["Arn"]
    audit = srv.audit_records()
    mine = [e for e in audit
            if (e.get("requestParameters") or {}).get("encryptionContext", {}).get("ferry:purpose") == "image-store"]
    names = {e["eventName"] for e in mine}
    assert {"GenerateDataKey", "Decrypt"} <= names, names
    for e in mine:
        assert "fargate.amazonaws.com" in json.dumps(e["userIdentity"]), e
        assert "errorCode" not in e, e
        assert platform in json.dumps(e.get("resources", e)), e
        ctx = e["requestParameters"]["encryptionContext"]
        assert ctx == {"aws:ecs:clusterAccount": arn.split(":")[4], "ferry:purpose": "image-store"}, ctx
    assert sum(e["eventName"] == "GenerateDataKey" for e in mine) >= len(sealed)
    # The platform key's policy shows the image store's statement.
    policy = json.loads(srv.aws("kms", "get-key-policy", "--key-id", platform, "--policy-name", "default")["Policy"])
    assert any("image store" in s["Sid"] for s in policy["Statement"]), policy

    ls = image(srv, "ls").stdout
    assert "httpd:2.4" in ls and digest[:19] in ls, ls
    srv.aws("ecs", "stop-task", "--task", arn)
    wait_status(srv, arn, "STOPPED")
    assert image(srv, "rm", "httpd:2.4").stdout.strip() == "removed httpd:2.4"
    assert "httpd:2.4" not in image(srv, "ls").stdout
    assert os.listdir(blobs) == []
    p = image(srv, "rm", "httpd:2.4", check=False)
    assert p.returncode != 0 and "not found" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_without_a_server_the_cli_says_to_start_one(tmp_path):
    d = tmp_path / "data"
    p = subprocess.run([ferry_bin(), "image", "ls", "--data-dir", str(d)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "no ferry server is running on" in p.stderr and "start it first" in p.stderr, p.stderr
    assert not (d / "images").exists()


def test_the_limit_collects_the_lru_image_no_task_uses(tmp_path):
    archives = {n: build(tmp_path, n, f"marker-{n}-{uuid.uuid4().hex}") for n in ("a:1", "b:1", "c:1")}
    size = max(os.path.getsize(a) for a in archives.values())
    limit = size * 5 // 2  # room for two images, not three
    root = tempfile.mkdtemp(prefix="ferry-e2e-")
    srv = FerryServer(os.path.join(root, "data"), extra_args=["--image-store-limit", str(limit)])
    srv.start()
    try:
        image(srv, "import", str(archives["a:1"]))
        create_source_log_group(srv)
        # a:1 is used by a running task (so it is also the least recently
        # used image when c:1 arrives: only the pin keeps it).
        arn, _ = run_task(srv, tmp_path, "pinned", "a:1")
        image(srv, "import", str(archives["b:1"]))
        image(srv, "import", str(archives["c:1"]))
        ls = image(srv, "ls").stdout
        assert "a:1" in ls and "c:1" in ls, ls
        assert "b:1" not in ls, f"the least recently used unused image was kept:\n{ls}"
        blobs = os.path.join(srv.data_dir, "images", "blobs", "sha256")
        assert sum(os.path.getsize(os.path.join(blobs, b)) for b in os.listdir(blobs)) <= limit
        assert "removed b:1" in srv.log() or "b:1" in srv.log(), srv.log()[-2000:]
        # Once its task stops, a:1 is fair game: prune removes it (and c:1).
        srv.aws("ecs", "stop-task", "--task", arn)
        wait_status(srv, arn, "STOPPED")
        pruned = image(srv, "prune").stdout
        assert "removed a:1" in pruned and "removed c:1" in pruned, pruned
        assert os.listdir(blobs) == []
    finally:
        rc = srv.stop()
        subprocess.run(["rm", "-rf", root])
    assert rc == 0
