"""The KMS through the real AWS CLI and boto3 against a real `ferry server`."""

import base64
import json
import os

import botocore.exceptions
import pytest
from botocore.config import Config
from conftest import state_files

PLATFORM_ALIAS = "alias/aws/ecs-ephemeral"


def b64(b):
    return base64.b64encode(b).decode()


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return f"fileb://{p}"


def error_code(fn, *a, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(*a, **kw)
    return e.value.response["Error"]["Code"], e.value.response["Error"].get("Message", "")


@pytest.fixture(scope="module")
def srv(ferry_server_module):
    return ferry_server_module


@pytest.fixture(scope="module")
def kms(srv):
    return srv.client("kms")


@pytest.fixture(scope="module")
def raw_kms(srv):
    """A client that skips botocore's own parameter validation, so the
    server's validation is what answers."""
    return srv.client("kms", parameter_validation=False)


def new_key(kms, **kw):
    return kms.create_key(**kw)["KeyMetadata"]


# -- the CLI, operation by operation ------------------------------------------

def test_cli_key_lifecycle_aliases_and_crypto(srv, tmp_path):
    key = srv.aws("kms", "create-key", "--description", "cli key", "--tags", "TagKey=team,TagValue=blue")["KeyMetadata"]
    kid, arn = key["KeyId"], key["Arn"]
    assert arn == f"arn:aws:kms:{srv.region}:{key['AWSAccountId']}:key/{kid}"
    assert key["KeyState"] == "Enabled" and key["KeyManager"] == "CUSTOMER"
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT" and key["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]

    assert srv.aws("kms", "describe-key", "--key-id", arn)["KeyMetadata"]["Description"] == "cli key"
    keys = srv.aws("kms", "list-keys")["Keys"]
    assert {"KeyId": kid, "KeyArn": arn} in keys

    srv.aws("kms", "create-alias", "--alias-name", "alias/cli", "--target-key-id", kid)
    aliases = srv.aws("kms", "list-aliases", "--key-id", kid)["Aliases"]
    assert [a["AliasName"] for a in aliases] == ["alias/cli"]
    alias_arn = aliases[0]["AliasArn"]
    # Every way of naming the key works for Encrypt.
    for name in (kid, arn, "alias/cli", alias_arn):
        out = srv.aws("kms", "encrypt", "--key-id", name, "--plaintext", write(tmp_path, "pt", b"hello"),
                      "--encryption-context", "purpose=test")
        assert out["KeyId"] == arn
    blob = base64.b64decode(out["CiphertextBlob"])
    dec = srv.aws("kms", "decrypt", "--ciphertext-blob", write(tmp_path, "ct", blob),
                  "--encryption-context", "purpose=test")
    assert base64.b64decode(dec["Plaintext"]) == b"hello"
    assert dec["KeyId"] == arn

    err = srv.aws_error("kms", "decrypt", "--ciphertext-blob", write(tmp_path, "ct", blob),
                        "--encryption-context", "purpose=other")
    assert err.code == "InvalidCiphertextException"

    dk = srv.aws("kms", "generate-data-key", "--key-id", "alias/cli", "--key-spec", "AES_256")
    assert len(base64.b64decode(dk["Plaintext"])) == 32
    dk2 = srv.aws("kms", "generate-data-key-without-plaintext", "--key-id", kid, "--number-of-bytes", "64")
    assert "Plaintext" not in dk2
    back = srv.aws("kms", "decrypt", "--ciphertext-blob", write(tmp_path, "dk2", base64.b64decode(dk2["CiphertextBlob"])))
    assert len(base64.b64decode(back["Plaintext"])) == 64
    rnd = srv.aws("kms", "generate-random", "--number-of-bytes", "1024")
    assert len(base64.b64decode(rnd["Plaintext"])) == 1024

    # ReEncrypt to another key.
    other = srv.aws("kms", "create-key")["KeyMetadata"]
    re = srv.aws("kms", "re-encrypt", "--ciphertext-blob", write(tmp_path, "ct", blob),
                 "--source-encryption-context", "purpose=test", "--destination-key-id", other["KeyId"])
    assert re["SourceKeyId"] == arn and re["KeyId"] == other["Arn"]
    dec = srv.aws("kms", "decrypt", "--ciphertext-blob", write(tmp_path, "re", base64.b64decode(re["CiphertextBlob"])))
    assert base64.b64decode(dec["Plaintext"]) == b"hello"

    srv.aws("kms", "update-alias", "--alias-name", "alias/cli", "--target-key-id", other["KeyId"])
    assert srv.aws("kms", "describe-key", "--key-id", "alias/cli")["KeyMetadata"]["Arn"] == other["Arn"]
    srv.aws("kms", "delete-alias", "--alias-name", "alias/cli")
    assert srv.aws_error("kms", "describe-key", "--key-id", "alias/cli").code == "NotFoundException"

    # Tags.
    srv.aws("kms", "tag-resource", "--key-id", kid, "--tags", "TagKey=env,TagValue=prod")
    tags = srv.aws("kms", "list-resource-tags", "--key-id", kid)["Tags"]
    assert {"TagKey": "team", "TagValue": "blue"} in tags and {"TagKey": "env", "TagValue": "prod"} in tags
    srv.aws("kms", "untag-resource", "--key-id", kid, "--tag-keys", "team")
    assert srv.aws("kms", "list-resource-tags", "--key-id", kid)["Tags"] == [{"TagKey": "env", "TagValue": "prod"}]

    # Policies.
    assert srv.aws("kms", "list-key-policies", "--key-id", kid)["PolicyNames"] == ["default"]
    pol = json.loads(srv.aws("kms", "get-key-policy", "--key-id", kid, "--policy-name", "default")["Policy"])
    assert pol["Statement"][0]["Principal"]["AWS"].endswith(":root")
    pol["Statement"].append({"Sid": "svc", "Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
                             "Action": "kms:Decrypt", "Resource": "*"})
    srv.aws("kms", "put-key-policy", "--key-id", kid, "--policy-name", "default", "--policy", json.dumps(pol))
    got = json.loads(srv.aws("kms", "get-key-policy", "--key-id", kid, "--policy-name", "default")["Policy"])
    assert got["Statement"][-1]["Sid"] == "svc"
    err = srv.aws_error("kms", "put-key-policy", "--key-id", kid, "--policy-name", "default", "--policy", '{"Statement": 1}')
    assert err.code == "MalformedPolicyDocumentException"

    # Disable / enable / schedule / cancel.
    srv.aws("kms", "disable-key", "--key-id", kid)
    err = srv.aws_error("kms", "encrypt", "--key-id", kid, "--plaintext", write(tmp_path, "pt", b"x"))
    assert err.code == "DisabledException"
    srv.aws("kms", "enable-key", "--key-id", kid)
    sched = srv.aws("kms", "schedule-key-deletion", "--key-id", kid, "--pending-window-in-days", "7")
    assert sched["KeyState"] == "PendingDeletion" and sched["PendingWindowInDays"] == 7
    err = srv.aws_error("kms", "decrypt", "--ciphertext-blob", write(tmp_path, "ct", blob),
                        "--encryption-context", "purpose=test")
    assert err.code == "KMSInvalidStateException"
    assert srv.aws("kms", "cancel-key-deletion", "--key-id", kid)["KeyId"] == arn
    assert srv.aws("kms", "describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"] == "Disabled"


def test_cli_rotation(srv, tmp_path):
    kid = srv.aws("kms", "create-key")["KeyMetadata"]["KeyId"]
    assert srv.aws("kms", "get-key-rotation-status", "--key-id", kid)["KeyRotationEnabled"] is False
    srv.aws("kms", "enable-key-rotation", "--key-id", kid, "--rotation-period-in-days", "90")
    st = srv.aws("kms", "get-key-rotation-status", "--key-id", kid)
    assert st["KeyRotationEnabled"] is True and st["RotationPeriodInDays"] == 90 and "NextRotationDate" in st
    old = srv.aws("kms", "encrypt", "--key-id", kid, "--plaintext", write(tmp_path, "pt", b"before"))
    srv.aws("kms", "rotate-key-on-demand", "--key-id", kid)
    rots = srv.aws("kms", "list-key-rotations", "--key-id", kid)["Rotations"]
    assert len(rots) == 1 and rots[0]["RotationType"] == "ON_DEMAND"
    new = srv.aws("kms", "encrypt", "--key-id", kid, "--plaintext", write(tmp_path, "pt", b"after"))
    for ct, want in ((old, b"before"), (new, b"after")):
        d = srv.aws("kms", "decrypt", "--ciphertext-blob", write(tmp_path, "ct", base64.b64decode(ct["CiphertextBlob"])))
        assert base64.b64decode(d["Plaintext"]) == want
    # The two blobs name different material.
    d_old = srv.aws("kms", "decrypt", "--ciphertext-blob", write(tmp_path, "ct", base64.b64decode(old["CiphertextBlob"])))
    d_new = srv.aws("kms", "decrypt", "--ciphertext-blob", write(tmp_path, "ct", base64.b64decode(new["CiphertextBlob"])))
    assert d_old["KeyMaterialId"] != d_new["KeyMaterialId"] == rots[0]["KeyMaterialId"]
    srv.aws("kms", "disable-key-rotation", "--key-id", kid)
    assert srv.aws("kms", "get-key-rotation-status", "--key-id", kid)["KeyRotationEnabled"] is False


def test_cli_grants(srv):
    kid = srv.aws("kms", "create-key")["KeyMetadata"]["KeyId"]
    g = srv.aws("kms", "create-grant", "--key-id", kid, "--grantee-principal", "fargate.amazonaws.com",
                "--operations", "Decrypt", "RetireGrant", "--name", "task-1",
                "--constraints", "EncryptionContextEquals={aws:ecs:clusterName=prod}")
    assert len(g["GrantId"]) == 64 and g["GrantToken"]
    again = srv.aws("kms", "create-grant", "--key-id", kid, "--grantee-principal", "fargate.amazonaws.com",
                    "--operations", "Decrypt", "RetireGrant", "--name", "task-1",
                    "--constraints", "EncryptionContextEquals={aws:ecs:clusterName=prod}")
    assert again["GrantId"] == g["GrantId"], "CreateGrant with the same name is idempotent"
    grants = srv.aws("kms", "list-grants", "--key-id", kid)["Grants"]
    assert len(grants) == 1
    assert grants[0]["Operations"] == ["Decrypt", "RetireGrant"]
    assert grants[0]["Constraints"] == {"EncryptionContextEquals": {"aws:ecs:clusterName": "prod"}}
    assert grants[0]["IssuingAccount"].endswith(":root")
    srv.aws("kms", "retire-grant", "--grant-token", g["GrantToken"])
    assert srv.aws("kms", "list-grants", "--key-id", kid)["Grants"] == []
    g2 = srv.aws("kms", "create-grant", "--key-id", kid, "--grantee-principal", "fargate.amazonaws.com",
                 "--operations", "Encrypt")
    srv.aws("kms", "revoke-grant", "--key-id", kid, "--grant-id", g2["GrantId"])
    assert srv.aws_error("kms", "revoke-grant", "--key-id", kid, "--grant-id", g2["GrantId"]).code == "NotFoundException"
    dry = srv.aws_error("kms", "create-grant", "--key-id", kid, "--grantee-principal", "fargate.amazonaws.com",
                        "--operations", "Decrypt", "--dry-run")
    assert dry.code == "DryRunOperationException"
    assert srv.aws("kms", "list-grants", "--key-id", kid)["Grants"] == []


# -- boto3: errors and validation ---------------------------------------------

def test_errors_by_name(kms, raw_kms):
    kid = new_key(kms)["KeyId"]
    code, _ = error_code(kms.describe_key, KeyId="00000000-0000-4000-8000-000000000000")
    assert code == "NotFoundException"
    code, msg = error_code(kms.describe_key, KeyId="alias/nope")
    assert code == "NotFoundException" and "alias/nope" in msg
    code, _ = error_code(kms.describe_key, KeyId="not-a-key")
    assert code == "NotFoundException"
    kms.create_alias(AliasName="alias/dup", TargetKeyId=kid)
    assert error_code(kms.create_alias, AliasName="alias/dup", TargetKeyId=kid)[0] == "AlreadyExistsException"
    assert error_code(kms.create_alias, AliasName="alias/aws/mine", TargetKeyId=kid)[0] == "NotAuthorizedException"
    assert error_code(kms.enable_key, KeyId="alias/dup")[0] == "NotFoundException"
    assert error_code(kms.decrypt, CiphertextBlob=b"garbage-garbage-garbage")[0] == "InvalidCiphertextException"
    blob = kms.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    other = new_key(kms)["KeyId"]
    assert error_code(kms.decrypt, CiphertextBlob=blob, KeyId=other)[0] == "IncorrectKeyException"
    assert error_code(kms.encrypt, KeyId=kid, Plaintext=b"x", GrantTokens=["bogus"])[0] == "InvalidGrantTokenException"
    assert error_code(kms.list_keys, Marker="zzz")[0] == "InvalidMarkerException"
    # Key specs in the model that ferry does not serve (asymmetric RSA/ECC and
    # HMAC keys are served: see test_kms_asymmetric.py).
    assert error_code(kms.create_key, KeySpec="SM2", KeyUsage="SIGN_VERIFY")[0] == "UnsupportedOperationException"

    # Values only the server checks (botocore's validation is off here).
    code, msg = error_code(raw_kms.generate_data_key, KeyId=kid, NumberOfBytes=1025)
    assert code == "ValidationException" and "less than or equal to 1024" in msg
    assert len(kms.generate_data_key(KeyId=kid, NumberOfBytes=1024)["Plaintext"]) == 1024
    code, msg = error_code(raw_kms.generate_data_key, KeyId=kid)
    assert code == "ValidationException" and "number of bytes or key spec" in msg
    code, msg = error_code(raw_kms.generate_data_key, KeyId=kid, NumberOfBytes=16, KeySpec="AES_128")
    assert code == "ValidationException"
    code, msg = error_code(raw_kms.encrypt, KeyId=kid, Plaintext=b"x" * 4097)
    assert code == "ValidationException" and "4096" in msg
    code, msg = error_code(raw_kms.encrypt, KeyId="", Plaintext=b"x")
    assert code == "ValidationException" and "keyId" in msg
    code, _ = error_code(raw_kms.schedule_key_deletion, KeyId=kid, PendingWindowInDays=3)
    assert code == "ValidationException"
    code, _ = error_code(raw_kms.create_alias, AliasName="nope", TargetKeyId=kid)
    assert code == "ValidationException"


def test_encryption_context_is_bound_unambiguously(kms):
    kid = new_key(kms)["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"p", EncryptionContext={"ab": "c"})["CiphertextBlob"]
    assert error_code(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "bc"})[0] == "InvalidCiphertextException"
    assert error_code(kms.decrypt, CiphertextBlob=blob)[0] == "InvalidCiphertextException"
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"ab": "c"})["Plaintext"] == b"p"
    # Any flipped bit is detected.
    for i in (0, 10, len(blob) // 2, len(blob) - 1):
        bad = bytearray(blob)
        bad[i] ^= 1
        code, _ = error_code(kms.decrypt, CiphertextBlob=bytes(bad), EncryptionContext={"ab": "c"})
        assert code in ("InvalidCiphertextException", "NotFoundException"), (i, code)


def test_dry_run_for_data_keys_and_decrypt(kms):
    kid = new_key(kms)["KeyId"]
    assert error_code(kms.generate_data_key_without_plaintext, KeyId=kid, KeySpec="AES_256", DryRun=True)[0] == \
        "DryRunOperationException"
    blob = kms.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    assert error_code(kms.decrypt, CiphertextBlob=blob, DryRun=True)[0] == "DryRunOperationException"
    # A dry run of something that would fail reports the failure instead.
    kms.disable_key(KeyId=kid)
    assert error_code(kms.decrypt, CiphertextBlob=blob, DryRun=True)[0] == "DisabledException"


def test_platform_key_exists_from_first_start(kms):
    md = kms.describe_key(KeyId=PLATFORM_ALIAS)["KeyMetadata"]
    assert md["KeyManager"] == "AWS" and md["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=md["KeyId"])["KeyRotationEnabled"] is True
    pol = json.loads(kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")["Policy"])
    services = {s["Principal"].get("Service") for s in pol["Statement"]}
    assert "fargate.amazonaws.com" in services
    # Not for direct use by the administrator, and not deletable.
    assert error_code(kms.encrypt, KeyId=PLATFORM_ALIAS, Plaintext=b"x")[0] == "AccessDeniedException"
    assert error_code(kms.schedule_key_deletion, KeyId=md["KeyId"])[0] == "AccessDeniedException"


def test_an_explicit_deny_in_the_key_policy_stops_the_administrator(srv, tmp_path):
    """The administrator is the account root: it keeps full access to its
    customer-managed keys, except what the key policy explicitly denies."""
    account = srv.aws("kms", "describe-key", "--key-id", PLATFORM_ALIAS)["KeyMetadata"]["AWSAccountId"]
    root = f"arn:aws:iam::{account}:root"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": root},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "No direct encryption", "Effect": "Deny", "Principal": {"AWS": root},
             "Action": "kms:Encrypt", "Resource": "*"},
        ],
    }
    pfile = tmp_path / "policy.json"
    pfile.write_text(json.dumps(policy))
    key = srv.aws("kms", "create-key", "--policy", f"file://{pfile}")["KeyMetadata"]
    arn = key["Arn"]

    e = srv.aws_error("kms", "encrypt", "--key-id", arn, "--plaintext", write(tmp_path, "pt", b"hello"))
    assert e.code == "AccessDeniedException", e
    assert e.message == (
        f"User: {root} is not authorized to perform: kms:Encrypt on resource: {arn} "
        "with an explicit deny in a resource-based policy"
    ), e.message

    # Everything the policy does not deny still works: data keys, Decrypt.
    dk = srv.aws("kms", "generate-data-key", "--key-id", arn, "--key-spec", "AES_256")
    blob = write(tmp_path, "blob", base64.b64decode(dk["CiphertextBlob"]))
    out = srv.aws("kms", "decrypt", "--ciphertext-blob", blob)
    assert out["Plaintext"] == dk["Plaintext"] and out["KeyId"] == arn

    # The denial is in the audit trail.
    denied = [r for r in read_audit(srv) if r["eventName"] == "Encrypt" and r.get("errorCode") == "AccessDeniedException"]
    assert denied and "explicit deny" in denied[-1]["errorMessage"]

    # A policy that would lock the administrator out of the policy itself is
    # refused (the lockout safety check), unless bypassed explicitly.
    locked = dict(policy, Statement=policy["Statement"][:1] + [
        {"Effect": "Deny", "Principal": {"AWS": root}, "Action": "kms:PutKeyPolicy", "Resource": "*"}])
    lfile = tmp_path / "locked.json"
    lfile.write_text(json.dumps(locked))
    e = srv.aws_error("kms", "put-key-policy", "--key-id", arn, "--policy-name", "default", "--policy", f"file://{lfile}")
    assert e.code == "MalformedPolicyDocumentException", e
    assert "will not allow you to update the key policy" in e.message

    # The administrator may repair the policy: without the deny, Encrypt works.
    ofile = tmp_path / "open.json"
    ofile.write_text(json.dumps(dict(policy, Statement=policy["Statement"][:1])))
    srv.aws("kms", "put-key-policy", "--key-id", arn, "--policy-name", "default", "--policy", f"file://{ofile}")
    assert srv.aws("kms", "encrypt", "--key-id", arn, "--plaintext", write(tmp_path, "pt2", b"hello"))["KeyId"] == arn


def test_pagination(kms):
    for _ in range(3):
        new_key(kms)
    seen = []
    marker = None
    while True:
        kw = {"Limit": 2}
        if marker:
            kw["Marker"] = marker
        page = kms.list_keys(**kw)
        assert len(page["Keys"]) <= 2
        seen += [k["KeyId"] for k in page["Keys"]]
        if not page["Truncated"]:
            break
        marker = page["NextMarker"]
    assert len(seen) == len(set(seen)) >= 4
    assert set(seen) == {k["KeyId"] for k in kms.get_paginator("list_keys").paginate().build_full_result()["Keys"]}


# -- audit, persistence, key material at rest ---------------------------------

def read_audit(srv):
    return srv.audit_records()


def test_audit_trail(srv, kms):
    kid = new_key(kms)["KeyId"]
    secret = b"audit-me-not-0123456789"
    ct = kms.encrypt(KeyId=kid, Plaintext=secret, EncryptionContext={"who": "audit"})["CiphertextBlob"]
    dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
    error_code(kms.decrypt, CiphertextBlob=ct, EncryptionContext={"who": "wrong"})
    kms.decrypt(CiphertextBlob=ct, EncryptionContext={"who": "audit"})
    events = read_audit(srv)
    text = srv.audit_text()
    for s in (b64(secret), b64(ct), b64(dk["Plaintext"]), b64(dk["CiphertextBlob"])):
        assert s not in text
    assert secret.decode() not in text
    mine = [e for e in events if any(r["ARN"].endswith(kid) for r in e["resources"])]
    names = [e["eventName"] for e in mine]
    assert names[:5] == ["CreateKey", "Encrypt", "GenerateDataKey", "Decrypt", "Decrypt"]
    enc = mine[1]
    assert enc["eventSource"] == "kms.amazonaws.com"
    assert enc["requestParameters"]["keyId"] == kid
    assert enc["requestParameters"]["encryptionContext"] == {"who": "audit"}
    assert enc["userIdentity"]["type"] == "Root"
    assert enc["userIdentity"]["accessKeyId"] == srv.credentials()[0]
    assert enc["resources"][0]["type"] == "AWS::KMS::Key"
    assert "errorCode" not in enc
    failed = mine[3]
    assert failed["errorCode"] == "InvalidCiphertextException"
    # Every record is one CloudTrail-shaped event with a unique id.
    assert len({e["eventID"] for e in events}) == len(events)
    assert all(e["eventSource"] == "kms.amazonaws.com" and e["requestID"] for e in events)


def test_restart_keeps_keys_and_key_material_is_not_on_disk_in_plaintext(ferry_server):
    kms = ferry_server.client("kms")
    kid = kms.create_key(Description="persist")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/persist", TargetKeyId=kid)
    kms.enable_key_rotation(KeyId=kid)
    dk = kms.generate_data_key(KeyId="alias/persist", NumberOfBytes=64, EncryptionContext={"k": "v"})
    g = kms.create_grant(KeyId=kid, GranteePrincipal="fargate.amazonaws.com", Operations=["Decrypt"])
    assert ferry_server.restart() == 0
    kms = ferry_server.client("kms")
    assert kms.describe_key(KeyId="alias/persist")["KeyMetadata"]["Description"] == "persist"
    assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is True
    assert [x["GrantId"] for x in kms.list_grants(KeyId=kid)["Grants"]] == [g["GrantId"]]
    back = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"k": "v"})
    assert back["Plaintext"] == dk["Plaintext"]
    platform = [a for a in kms.list_aliases()["Aliases"] if a["AliasName"] == PLATFORM_ALIAS]
    assert len(platform) == 1
    # No plaintext data key anywhere under the data dir (or in the database).
    for name in state_files(ferry_server):
        with open(name, "rb") as f:
            data = f.read()
        assert dk["Plaintext"] not in data, name
        assert b64(dk["Plaintext"]).encode() not in data, name


def test_audit_write_failure_fails_the_crypto_operation():
    """With the audit trail on a full file system, cryptographic operations
    fail with KMSInternalException instead of running unaudited; once there
    is space again they work, and the trail holds only whole records.

    The trail is where the store keeps it: the data dir's kms-audit.jsonl
    on the embedded store; on PostgreSQL a table, so there the database's
    cluster is on the full file system (with the data dir)."""
    import shutil
    import subprocess
    import tempfile

    from conftest import FerryServer, e2e_store

    on_pg = e2e_store() == "postgresql"
    mnt = tempfile.mkdtemp(prefix="ferry-e2e-kms-auditfull-")
    # A cluster takes ~40 MB (its first WAL segment is 16 MB), and postgres
    # must be able to enter the mount to reach its own directory.
    opts = "size=96m,mode=0711" if on_pg else "size=4m,mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "ferry-e2e-kms-auditfull", mnt], check=True)
    try:
        srv = FerryServer(os.path.join(mnt, "data"), pg_dir=mnt)
        # The server's own log stays off the full file system (and is kept
        # for a failure's message).
        srv.log_path = os.path.join(tempfile.mkdtemp(prefix="ferry-e2e-kms-auditfull-log-"), "server.log")
        srv.start()
        try:
            kms = srv.client("kms")
            kid = kms.create_key()["KeyMetadata"]["KeyId"]
            filler = os.path.join(mnt, "filler")
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * 65536)
            except OSError:
                pass
            # Take the last partial pages too.
            try:
                while True:
                    os.write(fd, b"\0" * 512)
            except OSError:
                pass
            os.close(fd)
            # The audit file's last page may still hold a record or two; a
            # database's table and index pages have more room (freed space
            # of updated rows is reused), so there it takes more records
            # until one needs a new page.
            failures = []
            for _ in range(300 if on_pg else 10):
                try:
                    kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
                except botocore.exceptions.ClientError as e:
                    failures.append((e.response["Error"]["Code"], e.response["Error"]["Message"]))
                    break
            assert failures, "GenerateDataKey kept succeeding with the audit trail's file system full"
            code, msg = failures[0]
            assert code == "KMSInternalException" and "audit" in msg
            code, _ = error_code(kms.encrypt, KeyId=kid, Plaintext=b"x" * 3000, EncryptionContext={"k": "v" * 1000})
            assert code == "KMSInternalException"
            os.remove(filler)
            assert len(kms.generate_data_key(KeyId=kid, KeySpec="AES_256")["Plaintext"]) == 32
            events = read_audit(srv)
            assert events[-1]["eventName"] == "GenerateDataKey" and "errorCode" not in events[-1]
        finally:
            # Its own cluster (on the mount) is stopped and removed too.
            assert srv.close() == 0
    finally:
        subprocess.run(["umount", mnt], check=True)
        shutil.rmtree(mnt, ignore_errors=True)
