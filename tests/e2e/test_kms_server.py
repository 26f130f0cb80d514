"""The server skeleton: data dir, credentials, SigV4 failures, restart."""

import os
import stat

import botocore.exceptions
import pytest


def test_first_start_initializes_data_dir(ferry_server):
    d = ferry_server.data_dir
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(d, "credentials")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ferry_server.root_key_path).st_mode) == 0o600
    key, secret = ferry_server.credentials()
    assert key.startswith("AKIA") and len(key) == 20
    assert len(secret) == 40


def test_unknown_access_key_is_unrecognized(ferry_server):
    err = ferry_server.aws_error("kms", "list-keys", env=ferry_server.env(
        AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_ACCESS_KEY_ID="AKIAUNKNOWNKEY000000",
        AWS_SECRET_ACCESS_KEY="x" * 40))
    assert err.code == "UnrecognizedClientException"
    assert err.message == "The security token included in the request is invalid."


def test_wrong_secret_is_invalid_signature(ferry_server):
    key, _ = ferry_server.credentials()
    err = ferry_server.aws_error("kms", "list-keys", env=ferry_server.env(
        AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_ACCESS_KEY_ID=key,
        AWS_SECRET_ACCESS_KEY="y" * 40))
    assert err.code == "InvalidSignatureException"
    assert err.message.startswith("The request signature we calculated does not match the signature you provided.")


def test_missing_and_malformed_signatures(ferry_server):
    import urllib.request
    import urllib.error
    import json

    def post(headers):
        req = urllib.request.Request(ferry_server.endpoint + "/", data=b"{}", method="POST", headers={
            "X-Amz-Target": "TrentService.ListKeys",
            "Content-Type": "application/x-amz-json-1.1", **headers})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = post({})
    assert status in (400, 403)
    assert body["__type"] == "MissingAuthenticationTokenException"
    status, body = post({"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAX/20250101/us-east-1/kms/aws4_request",
                         "X-Amz-Date": "20250101T000000Z"})
    assert status == 400
    assert body["__type"] == "IncompleteSignatureException"
    assert "Signature" in body["message"]
    status, body = post({"Authorization": "garbage"})
    assert status == 400 and body["__type"] == "IncompleteSignatureException"


def test_signature_for_another_service_is_rejected(ferry_server):
    # Sign a KMS request with the scope of another service.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import urllib.request
    import urllib.error
    import json

    key, secret = ferry_server.credentials()
    req = AWSRequest(method="POST", url=ferry_server.endpoint + "/", data=b"{}",
                     headers={"X-Amz-Target": "TrentService.ListKeys",
                              "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(key, secret), "ecs", "us-east-1").add_auth(req)
    r = urllib.request.Request(req.url, data=req.body, method="POST", headers=dict(req.headers))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(r, timeout=10)
    body = json.loads(e.value.read())
    assert body["__type"] == "InvalidSignatureException"
    assert "kms" in body["message"]


def test_boto3_errors_are_parsed(ferry_server):
    c = ferry_server.client("kms", secret_key="z" * 40)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.list_keys()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert len(e.value.response["ResponseMetadata"]["RequestId"]) == 36


def test_restart_reuses_identity(ferry_server):
    before = ferry_server.credentials()
    with open(ferry_server.root_key_path, "rb") as f:
        root_before = f.read()
    assert ferry_server.restart() == 0
    assert ferry_server.credentials() == before
    with open(ferry_server.root_key_path, "rb") as f:
        assert f.read() == root_before
    # The same key still authenticates after the restart.
    assert isinstance(ferry_server.aws("kms", "list-keys")["Keys"], list)


def _signed_at(srv, when):
    """A ListKeys request signed by botocore as if at `when` (UTC)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key, secret = srv.credentials()
    req = AWSRequest(method="POST", url=srv.endpoint + "/", data=b"{}",
                     headers={"X-Amz-Target": "TrentService.ListKeys",
                              "Content-Type": "application/x-amz-json-1.1"})
    auth = SigV4Auth(Credentials(key, secret), "kms", "us-east-1")
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    req.context["timestamp"] = stamp
    req.headers["X-Amz-Date"] = stamp
    req.headers["Host"] = srv.endpoint.split("//", 1)[1]
    canonical = auth.canonical_request(req)
    sig = auth.signature(auth.string_to_sign(req, canonical), req)
    scope = f"{stamp[:8]}/us-east-1/kms/aws4_request"
    signed = auth.signed_headers(auth.headers_to_sign(req))
    req.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={sig}")
    return req


def test_clock_skew_window(ferry_server):
    import datetime
    import json
    import urllib.error
    import urllib.request

    def send(req):
        r = urllib.request.Request(req.url, data=req.body, method="POST", headers=dict(req.headers))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(r, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    now = datetime.datetime.now(datetime.timezone.utc)
    status, body = send(_signed_at(ferry_server, now - datetime.timedelta(minutes=10)))
    assert status == 200 and "Keys" in body, body
    status, body = send(_signed_at(ferry_server, now - datetime.timedelta(minutes=20)))
    assert status == 400 and body["__type"] == "InvalidSignatureException"
    assert body["message"].startswith("Signature expired:")
    status, body = send(_signed_at(ferry_server, now + datetime.timedelta(minutes=20)))
    assert status == 400 and body["__type"] == "InvalidSignatureException"


def test_server_process_holds_keys_safely(ferry_server):
    """No core dumps, and memory locked: this CI host runs as root with
    CAP_IPC_LOCK, so the lock must be taken even though RLIMIT_MEMLOCK is
    finite and cannot be raised (no CAP_SYS_RESOURCE)."""
    pid = ferry_server.proc.pid
    limits = open(f"/proc/{pid}/limits").read()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core
    status = open(f"/proc/{pid}/status").read()
    caps = int(next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1], 16)
    assert caps & (1 << 14), "this test needs CAP_IPC_LOCK (run as root, as CI does)"
    vmlck = int(next(line for line in status.splitlines() if line.startswith("VmLck:")).split()[1])
    assert vmlck > 0, "ferry server has no locked memory"
    assert "memory is not locked" not in ferry_server.log()
