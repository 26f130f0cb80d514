"""Hostile input to the KMS over boto3: every single-bit flip of a
ciphertext blob, RetireGrant's audit record, and requests sized to flood
the audit trail."""

import json
import os

# The module's server and clients are test_kms's fixtures (module scope: one
# server for this file).
from test_kms import error_code, kms, raw_kms, srv  # noqa: F401

AUDIT = "kms-audit.jsonl"


def audit_size(srv):
    """How many bytes the audit trail holds: the file's size on the
    embedded store; on PostgreSQL (a table, crates/kms/src/audit_store.rs)
    the same count, its records' JSON lines with their newlines."""
    if srv.store != "postgresql":
        return os.path.getsize(os.path.join(srv.data_dir, AUDIT))
    return sum(len(line.encode()) + 1 for line in srv.audit_lines())


def audit_records(srv):
    return srv.audit_records()


def test_every_bit_flip_of_a_blob_is_invalid_ciphertext(srv, kms):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    other = kms.create_key()["KeyMetadata"]["Arn"]
    ec = {"purpose": "tamper"}
    blob = kms.encrypt(KeyId=arn, Plaintext=b"secret", EncryptionContext=ec)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ec)["Plaintext"] == b"secret"
    # The key ARN sits in the blob after "FKMS", the version and a u16 length.
    arn_at = blob.index(arn.encode())
    assert arn_at == 7

    for bit in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        code, msg = error_code(kms.decrypt, CiphertextBlob=bytes(bad), EncryptionContext=ec)
        assert code == "InvalidCiphertextException", (bit, code, msg)
        assert "key/" not in msg, (bit, msg)
        if bit % 8 == 0:
            # ReEncrypt reads the blob the same way, and so does a Decrypt
            # that names the right key.
            code, msg = error_code(kms.re_encrypt, CiphertextBlob=bytes(bad),
                                 SourceEncryptionContext=ec, DestinationKeyId=other)
            assert code == "InvalidCiphertextException", (bit, code, msg)
            code, msg = error_code(kms.decrypt, CiphertextBlob=bytes(bad),
                                 EncryptionContext=ec, KeyId=arn)
            assert code == "InvalidCiphertextException", (bit, code, msg)

    # A flip inside the key id: the record has the error code and names no
    # key taken from the blob.
    bad = bytearray(blob)
    bad[arn_at + len(arn) - 1] ^= 1
    error_code(kms.decrypt, CiphertextBlob=bytes(bad), EncryptionContext=ec)
    rec = audit_records(srv)[-1]
    assert rec["eventName"] == "Decrypt"
    assert rec["errorCode"] == "InvalidCiphertextException"
    assert rec["resources"] == []
    assert bytes(bad[arn_at:arn_at + len(arn)]).decode(errors="replace") not in json.dumps(rec)

    # Naming another key than the blob's is IncorrectKeyException, as AWS documents.
    code, _ = error_code(kms.decrypt, CiphertextBlob=blob, EncryptionContext=ec, KeyId=other)
    assert code == "IncorrectKeyException"


def test_retire_grant_record_names_the_grant(srv, kms):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    account = arn.split(":")[4]
    g = kms.create_grant(KeyId=arn, GranteePrincipal=f"arn:aws:iam::{account}:role/app",
                         Operations=["Decrypt"])
    kms.retire_grant(GrantToken=g["GrantToken"])
    rec = [r for r in audit_records(srv) if r["eventName"] == "RetireGrant"][-1]
    assert "errorCode" not in rec, rec
    assert rec["requestParameters"]["grantId"] == g["GrantId"]
    assert rec["requestParameters"]["keyId"] == arn
    assert rec["resources"][0]["ARN"] == arn
    assert g["GrantToken"] not in json.dumps(rec)
    assert kms.list_grants(KeyId=arn)["Grants"] == []


def test_oversized_context_is_refused_before_the_audit_trail(srv, kms, raw_kms):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    big = {"big": "x" * (20 * 1024)}
    calls = [
        lambda: kms.encrypt(KeyId=arn, Plaintext=b"p", EncryptionContext=big),
        lambda: kms.generate_data_key(KeyId=arn, NumberOfBytes=32, EncryptionContext=big),
        lambda: kms.decrypt(CiphertextBlob=b"\0" * 64, EncryptionContext=big),
        lambda: kms.create_grant(KeyId=arn, GranteePrincipal="fargate.amazonaws.com",
                                 Operations=["Decrypt"],
                                 Constraints={"EncryptionContextEquals": big}),
        # The first member fails validation; the big context behind it is
        # never checked, and still stays out of the record.
        lambda: raw_kms.encrypt(KeyId="", Plaintext=b"p", EncryptionContext=big),
    ]
    for i, fn in enumerate(calls):
        before = audit_size(srv)
        code, msg = error_code(lambda: fn())
        assert code == "ValidationException", (i, code, msg)
        grew = audit_size(srv) - before
        assert 0 < grew < 2048, (i, grew)
        assert audit_records(srv)[-1]["errorCode"] == "ValidationException"

    # 8,192 bytes of context is the limit, and is accepted.
    at_limit = {"k": "v" * 8191}
    blob = kms.encrypt(KeyId=arn, Plaintext=b"p", EncryptionContext=at_limit)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=at_limit)["Plaintext"] == b"p"
    code, _ = error_code(kms.encrypt, KeyId=arn, Plaintext=b"p",
                       EncryptionContext={"k": "v" * 8192})
    assert code == "ValidationException"


def test_oversized_policy_tags_and_constraints_are_refused(srv, kms):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    account = arn.split(":")[4]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "s" * (33 * 1024), "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"}]})
    before = audit_size(srv)
    code, _ = error_code(kms.put_key_policy, KeyId=arn, PolicyName="default", Policy=policy)
    assert code == "LimitExceededException"
    code, _ = error_code(kms.create_key, Tags=[{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)])
    assert code == "LimitExceededException"
    code, _ = error_code(kms.create_grant, KeyId=arn, GranteePrincipal="fargate.amazonaws.com",
                       Operations=["Decrypt"],
                       Constraints={"EncryptionContextSubset": {f"k{i}": "v" for i in range(9)}})
    assert code == "ValidationException"
    code, _ = error_code(kms.create_grant, KeyId=arn, GranteePrincipal="fargate.amazonaws.com",
                       Operations=["Decrypt"],
                       Constraints={"EncryptionContextSubset": {"k": "v" * 385}})
    assert code == "ValidationException"
    assert audit_size(srv) - before < 4 * 2048
