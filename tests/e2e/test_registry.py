"""The ECR-compatible registry with the real AWS CLI and skopeo: repositories,
login with `aws ecr get-login-password`, push and pull of an image whose layer
holds a marker, the ECR image API, lifecycle expiry, immutable tags, and the
blobs sealed under the repository's KMS key (no marker bytes on disk, every
data key use audited, a disabled customer key refusing pulls)."""

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import base64

import pytest

MARKER = b"ferry-registry-marker-7f3a9c21"


def oci_archive(path, marker, extra=b""):
    """A minimal OCI image archive: one uncompressed layer holding
    /marker.txt (marker + extra), its config, manifest and index."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as t:
        data = marker + extra
        info = tarfile.TarInfo("marker.txt")
        info.size = len(data)
        info.mtime = 0
        t.addfile(info, io.BytesIO(data))
    layer = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    blobs = {}

    def add(b):
        d = hashlib.sha256(b).hexdigest()
        blobs[d] = b
        return "sha256:" + d

    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": add(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": add(layer), "size": len(layer)}],
    }).encode()
    mdigest = add(manifest)
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": len(manifest)}],
    }).encode()
    with tarfile.open(path, "w") as t:
        def put(name, b):
            info = tarfile.TarInfo(name)
            info.size = len(b)
            t.addfile(info, io.BytesIO(b))
        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", index)
        for d, b in blobs.items():
            put(f"blobs/sha256/{d}", b)
    return mdigest


def host(srv):
    return srv.endpoint.removeprefix("http://")


def skopeo(*args, check=True):
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        pytest.fail(f"skopeo {' '.join(args)} failed: {p.stderr}")
    return p


def login(srv, authfile):
    pw = subprocess.run(
        ["aws", "--endpoint-url", srv.endpoint, "ecr", "get-login-password"],
        capture_output=True, text=True, env=srv.env(), check=True,
    ).stdout.strip()
    p = subprocess.run(
        ["skopeo", "login", "--authfile", authfile, "--tls-verify=false", "-u", "AWS", "--password-stdin", host(srv)],
        input=pw, capture_output=True, text=True,
    )
    assert p.returncode == 0, p.stderr
    return pw


def push(srv, authfile, archive, ref):
    """Pushes; returns the digest of the manifest as pushed (skopeo may
    rewrite the archive's manifest, e.g. compress its layer)."""
    fd, digestfile = tempfile.mkstemp()
    os.close(fd)
    skopeo("copy", "--authfile", authfile, "--dest-tls-verify=false", "--digestfile", digestfile,
           f"oci-archive:{archive}", f"docker://{host(srv)}/{ref}")
    with open(digestfile) as f:
        return f.read().strip()


def holds_marker(tree):
    """Whether a pulled OCI layout holds the marker in some (possibly
    gzip-compressed) blob."""
    import gzip
    for d, _, files in os.walk(tree):
        for f in files:
            b = open(os.path.join(d, f), "rb").read()
            if b[:2] == b"\x1f\x8b":
                b = gzip.decompress(b)
            if MARKER in b:
                return True
    return False


def grep_tree(root, needle):
    hits = []
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            try:
                with open(p, "rb") as fh:
                    if needle in fh.read():
                        hits.append(p)
            except OSError:
                pass
    return hits


def test_push_pull_describe_and_sealed_at_rest(ferry_server, tmp_path):
    srv = ferry_server
    repo = srv.aws("ecr", "create-repository", "--repository-name", "team/web")["repository"]
    assert repo["repositoryUri"].endswith(".dkr.ecr.us-east-1.amazonaws.com/team/web")
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    e = srv.aws_error("ecr", "create-repository", "--repository-name", "team/web")
    assert e.code == "RepositoryAlreadyExistsException"
    e = srv.aws_error("ecr", "create-repository", "--repository-name", "Bad_Name")
    assert e.code == "InvalidParameterException"

    auth = str(tmp_path / "auth.json")
    pw = login(srv, auth)
    archive = str(tmp_path / "img.tar")
    oci_archive(archive, MARKER)
    digest = push(srv, auth, archive, "team/web:v1")

    # The ECR API sees the image.
    ids = srv.aws("ecr", "list-images", "--repository-name", "team/web")["imageIds"]
    assert ids == [{"imageDigest": digest, "imageTag": "v1"}]
    det = srv.aws("ecr", "describe-images", "--repository-name", "team/web")["imageDetails"]
    assert det[0]["imageDigest"] == digest and det[0]["imageTags"] == ["v1"]
    assert det[0]["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert det[0]["imageSizeInBytes"] > 0 and det[0]["imagePushedAt"] > 0
    got = srv.aws("ecr", "batch-get-image", "--repository-name", "team/web", "--image-ids", "imageTag=v1")
    assert got["failures"] == []
    assert hashlib.sha256(got["images"][0]["imageManifest"].encode()).hexdigest() == digest.split(":")[1]
    got = srv.aws("ecr", "batch-get-image", "--repository-name", "team/web", "--image-ids", "imageTag=nope")
    assert got["failures"][0]["failureCode"] == "ImageNotFound"

    # Pull back: same digest, same marker.
    insp = json.loads(skopeo("inspect", "--authfile", auth, "--tls-verify=false", f"docker://{host(srv)}/team/web:v1").stdout)
    assert insp["Digest"] == digest
    out = tmp_path / "pulled"
    skopeo("copy", "--authfile", auth, "--src-tls-verify=false", f"docker://{host(srv)}/team/web:v1", f"oci:{out}:v1")
    assert holds_marker(str(out)), "the pulled image lacks the marker"
    with open(out / "index.json") as f:
        assert json.load(f)["manifests"][0]["digest"] == digest

    # Wrong password: 401; missing tag: MANIFEST_UNKNOWN.
    bad = base64.b64encode(b"AWS:" + pw[:-4].encode() + b"AAAA").decode()
    req = urllib.request.Request(f"{srv.endpoint}/v2/team/web/manifests/v1", headers={"Authorization": f"Basic {bad}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401
    assert err.value.headers["WWW-Authenticate"].startswith("Basic realm=")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{srv.endpoint}/v2/", timeout=10)
    assert err.value.code == 401
    good = base64.b64encode(b"AWS:" + pw.encode()).decode()
    req = urllib.request.Request(f"{srv.endpoint}/v2/team/web/manifests/missing", headers={"Authorization": f"Basic {good}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 404
    assert json.loads(err.value.read())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    # A repository that does not exist: NAME_UNKNOWN (no auto-create).
    p = skopeo(
        "copy", "--authfile", auth, "--dest-tls-verify=false", f"oci-archive:{archive}",
        f"docker://{host(srv)}/nosuch:v1", check=False)
    assert p.returncode != 0 and ("NAME_UNKNOWN" in p.stderr or "name unknown" in p.stderr.lower()), p.stderr

    # Not empty: refused without --force.
    e = srv.aws_error("ecr", "delete-repository", "--repository-name", "team/web")
    assert e.code == "RepositoryNotEmptyException"

    # No marker bytes anywhere in the data directory.
    assert [h for d in srv.state_dirs() for h in grep_tree(d, MARKER)] == []

    # Every blob's data key: GenerateDataKey/Decrypt as ECR with the
    # repository's encryption context.
    audit = srv.audit_records()
    ctx = {"aws:ecr:arn": repo["repositoryArn"]}
    mine = [a for a in audit if (a.get("requestParameters") or {}).get("encryptionContext") == ctx]
    names = {a["eventName"] for a in mine}
    assert {"GenerateDataKey", "Decrypt"} <= names, names
    assert all("ecr.amazonaws.com" in json.dumps(a["userIdentity"]) for a in mine)

    srv.aws("ecr", "delete-repository", "--repository-name", "team/web", "--force")
    e = srv.aws_error("ecr", "describe-repositories", "--repository-names", "team/web")
    assert e.code == "RepositoryNotFoundException"


def test_lifecycle_immutable_and_customer_key(ferry_server, tmp_path):
    srv = ferry_server
    key = srv.aws("kms", "create-key")["KeyMetadata"]["Arn"]
    repo = srv.aws("ecr", "create-repository", "--repository-name", "app",
                   "--image-tag-mutability", "IMMUTABLE",
                   "--encryption-configuration", f"encryptionType=KMS,kmsKey={key}")["repository"]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key}
    auth = str(tmp_path / "auth.json")
    login(srv, auth)
    a, b = str(tmp_path / "a.tar"), str(tmp_path / "b.tar")
    oci_archive(a, MARKER, b"-one")
    oci_archive(b, MARKER, b"-two")
    da = push(srv, auth, a, "app:one")
    # Immutable: the tag cannot move.
    p = skopeo("copy", "--authfile", auth, "--dest-tls-verify=false", f"oci-archive:{b}",
               f"docker://{host(srv)}/app:one", check=False)
    assert p.returncode != 0 and "tag" in p.stderr.lower(), p.stderr
    time.sleep(0.05)
    db = push(srv, auth, b, "app:two")

    policy = json.dumps({"rules": [{"rulePriority": 1, "description": "keep one",
                                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
                                    "action": {"type": "expire"}}]})
    srv.aws("ecr", "put-lifecycle-policy", "--repository-name", "app", "--lifecycle-policy-text", policy)
    ids = srv.aws("ecr", "list-images", "--repository-name", "app")["imageIds"]
    assert ids == [{"imageDigest": db, "imageTag": "two"}], ids
    assert srv.aws("ecr", "get-lifecycle-policy", "--repository-name", "app")["lifecyclePolicyText"] == policy
    e = srv.aws_error("ecr", "put-lifecycle-policy", "--repository-name", "app", "--lifecycle-policy-text",
                       policy.replace('"any"', '"tagged"'))
    assert e.code == "InvalidParameterException"

    # The customer key's grant lets ECR seal; a disabled key refuses pulls.
    audit = srv.audit_text()
    assert '"CreateGrant"' in audit and "ecr.amazonaws.com" in audit
    srv.aws("kms", "disable-key", "--key-id", key)
    p = skopeo("inspect", "--authfile", auth, "--tls-verify=false", f"docker://{host(srv)}/app:two", check=False)
    assert p.returncode != 0
    got = srv.aws("ecr", "batch-get-image", "--repository-name", "app", "--image-ids", "imageTag=two")
    assert got["failures"][0]["failureCode"] == "KmsError"
    assert "KMS" in got["failures"][0]["failureReason"]
    assert [h for d in srv.state_dirs() for h in grep_tree(d, MARKER)] == []
    assert da != db
