"""The registry's distribution API as clients other than skopeo use it, over
raw HTTP: chunked uploads (POST, PATCH with Content-Range, PUT ?digest=),
cross-repository mounts, the catalog and tag lists with pagination, blob
range reads; and an IAM user's policies deciding what it may pull and push
with the token `aws ecr get-login-password` gives it.
"""

import base64
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Client:
    """Basic auth `AWS:<token>`, as docker/podman/crane send after login."""

    def __init__(self, srv, env=None):
        pw = subprocess.run(["aws", "--endpoint-url", srv.endpoint, "ecr", "get-login-password"],
                            capture_output=True, text=True, env=env or srv.env(), check=True).stdout.strip()
        self.base = srv.endpoint
        self.auth = f"Basic {b64('AWS:' + pw)}"

    def req(self, method, path, data=None, headers=None):
        h = {"Authorization": self.auth, **(headers or {})}
        r = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def chunked_push(c, repo, blob, parts=3):
    """POST to start, PATCH each part with its Content-Range, PUT to finish."""
    st, h, _ = c.req("POST", f"/v2/{repo}/blobs/uploads/")
    assert st == 202, (st, h)
    loc = h["Location"]
    step = -(-len(blob) // parts)
    for off in range(0, len(blob), step):
        chunk = blob[off:off + step]
        path = loc.removeprefix(c.base)
        st, h, body = c.req("PATCH", path, chunk, {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{off}-{off + len(chunk) - 1}"})
        assert st == 202, (st, body)
        assert h["Range"] == f"0-{off + len(chunk) - 1}", h
        loc = h["Location"]
    path = loc.removeprefix(c.base)
    sep = "&" if "?" in path else "?"
    st, h, body = c.req("PUT", f"{path}{sep}digest={digest(blob)}")
    assert st == 201, (st, body)
    assert h["Docker-Content-Digest"] == digest(blob)


def put_image(c, repo, tag, layer):
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest(layer)]}}).encode()
    st, _, body = c.req("POST", f"/v2/{repo}/blobs/uploads/?digest={digest(config)}", config,
                        {"Content-Type": "application/octet-stream"})
    assert st == 201, body
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer),
                    "size": len(layer)}]}).encode()
    st, h, body = c.req("PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 201, body
    assert h["Docker-Content-Digest"] == digest(manifest)
    return digest(manifest)


def test_chunked_uploads_mounts_catalog_tags_and_ranges(ferry_server):
    srv = ferry_server
    for r in ("proto/a", "proto/b"):
        srv.aws("ecr", "create-repository", "--repository-name", r)
    c = Client(srv)
    layer = os.urandom(300_000)

    chunked_push(c, "proto/a", layer)
    # A PATCH whose range does not continue the upload is refused (416).
    st, h, _ = c.req("POST", "/v2/proto/a/blobs/uploads/")
    path = h["Location"].removeprefix(c.base)
    st, _, _ = c.req("PATCH", path, b"xyz", {"Content-Range": "10-12"})
    assert st == 416, st
    # A wrong digest at the end is DIGEST_INVALID and names nothing.
    st, h, _ = c.req("POST", "/v2/proto/a/blobs/uploads/")
    path = h["Location"].removeprefix(c.base)
    c.req("PATCH", path, b"abc", {"Content-Range": "0-2"})
    sep = "&" if "?" in path else "?"
    st, _, body = c.req("PUT", f"{path}{sep}digest={digest(b'abd')}")
    assert st == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID", body
    assert c.req("HEAD", f"/v2/proto/a/blobs/{digest(b'abc')}")[0] == 404

    m = put_image(c, "proto/a", "v1", layer)
    put_image(c, "proto/a", "v2", layer)

    # Range reads of a blob.
    st, h, body = c.req("GET", f"/v2/proto/a/blobs/{digest(layer)}", headers={"Range": "bytes=1000-1999"})
    assert st == 206 and body == layer[1000:2000], (st, len(body))
    st, _, body = c.req("GET", f"/v2/proto/a/blobs/{digest(layer)}")
    assert st == 200 and body == layer

    # A mount into another repository: 201, and the blob is there.
    assert c.req("HEAD", f"/v2/proto/b/blobs/{digest(layer)}")[0] == 404
    st, h, body = c.req("POST", f"/v2/proto/b/blobs/uploads/?mount={digest(layer)}&from=proto/a")
    assert st == 201, (st, body)
    st, _, body = c.req("GET", f"/v2/proto/b/blobs/{digest(layer)}")
    assert st == 200 and body == layer
    # Mounting what the source does not hold falls back to an upload (202).
    st, _, _ = c.req("POST", f"/v2/proto/b/blobs/uploads/?mount={digest(b'none')}&from=proto/a")
    assert st == 202

    # Catalog and tags, paginated.
    st, _, body = c.req("GET", "/v2/_catalog")
    assert st == 200 and {"proto/a", "proto/b"} <= set(json.loads(body)["repositories"]), body
    st, h, body = c.req("GET", "/v2/proto/a/tags/list?n=1")
    assert st == 200 and json.loads(body)["tags"] == ["v1"], body
    assert "Link" in h, h
    st, _, body = c.req("GET", "/v2/proto/a/tags/list?n=1&last=v1")
    assert json.loads(body)["tags"] == ["v2"], body

    # The manifest by digest, with its content type.
    st, h, body = c.req("GET", f"/v2/proto/a/manifests/{m}",
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200 and digest(body) == m
    assert h["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"


def test_an_iam_users_policy_decides_pull_and_push(ferry_server):
    srv = ferry_server
    srv.aws("ecr", "create-repository", "--repository-name", "team/app")
    admin = Client(srv)
    layer = os.urandom(1000)
    st, _, body = admin.req("POST", f"/v2/team/app/blobs/uploads/?digest={digest(layer)}", layer,
                            {"Content-Type": "application/octet-stream"})
    assert st == 201, body
    put_image(admin, "team/app", "v1", layer)

    srv.aws("iam", "create-user", "--user-name", "puller")
    srv.aws("iam", "put-user-policy", "--user-name", "puller", "--policy-name", "pull",
            "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                                               "ecr:GetDownloadUrlForLayer",
                                               "ecr:BatchCheckLayerAvailability"], "Resource": "*"}]}))
    k = srv.aws("iam", "create-access-key", "--user-name", "puller")["AccessKey"]
    env = srv.env(AWS_ACCESS_KEY_ID=k["AccessKeyId"], AWS_SECRET_ACCESS_KEY=k["SecretAccessKey"],
                  AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    user = Client(srv, env=env)
    st, _, _ = user.req("GET", "/v2/team/app/manifests/v1",
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200
    assert user.req("GET", f"/v2/team/app/blobs/{digest(layer)}")[2] == layer
    # No push permission: DENIED.
    st, _, body = user.req("POST", "/v2/team/app/blobs/uploads/")
    assert st == 403 and json.loads(body)["errors"][0]["code"] == "DENIED", (st, body)

    # The token dies with the user's key.
    srv.aws("iam", "delete-access-key", "--user-name", "puller", "--access-key-id", k["AccessKeyId"])
    st, _, _ = user.req("GET", "/v2/team/app/manifests/v1")
    assert st == 401

    # A user without ecr:GetAuthorizationToken gets no token at all.
    srv.aws("iam", "create-user", "--user-name", "nobody")
    k2 = srv.aws("iam", "create-access-key", "--user-name", "nobody")["AccessKey"]
    env2 = srv.env(AWS_ACCESS_KEY_ID=k2["AccessKeyId"], AWS_SECRET_ACCESS_KEY=k2["SecretAccessKey"],
                   AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    with pytest.raises(subprocess.CalledProcessError):
        Client(srv, env=env2)
