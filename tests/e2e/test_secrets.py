"""Secrets Manager and SSM Parameter Store through the real AWS CLI and
boto3 against a real `ferry server`: versions and stages, deletion and
restore, parameters of every type, sealing under the KMS (no plaintext on
disk, a Decrypt audit record per read), customer keys and resource
policies with an explicit Deny."""

import base64
import json
import os
import uuid

import botocore.exceptions
import pytest


def error_of(fn, *a, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(*a, **kw)
    return e.value.response["Error"]["Code"], e.value.response["Error"].get("Message", "")


def read_audit(srv):
    return srv.audit_records()


def files_containing(root, needles):
    """(path, needle) for every file under `root` (recursively, as bytes)
    that contains one of `needles`."""
    hits = []
    for d, _, files in os.walk(root):
        for name in files:
            path = os.path.join(d, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            hits.extend((path, n) for n in needles if n in data)
    return hits


@pytest.fixture(scope="module")
def srv(ferry_server_module):
    return ferry_server_module


@pytest.fixture(scope="module")
def sm(srv):
    return srv.client("secretsmanager")


@pytest.fixture(scope="module")
def ssm(srv):
    return srv.client("ssm")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- Secrets Manager with the CLI ---------------------------------------------

def test_cli_secret_lifecycle_versions_and_stages(srv):
    name = unique("prod/db")
    doc = {"username": "app", "password": "pw-" + uuid.uuid4().hex}
    c = srv.aws("secretsmanager", "create-secret", "--name", name, "--description", "the database",
                "--secret-string", json.dumps(doc), "--tags", "Key=team,Value=payments")
    arn, v1 = c["ARN"], c["VersionId"]
    assert c["Name"] == name
    assert arn.startswith(f"arn:aws:secretsmanager:{srv.region}:") and f":secret:{name}-" in arn
    assert len(arn.rsplit("-", 1)[1]) == 6

    got = srv.aws("secretsmanager", "get-secret-value", "--secret-id", name)
    assert json.loads(got["SecretString"]) == doc
    assert got["VersionStages"] == ["AWSCURRENT"] and got["VersionId"] == v1 and got["ARN"] == arn

    p = srv.aws("secretsmanager", "put-secret-value", "--secret-id", arn, "--secret-string", "second")
    v2 = p["VersionId"]
    assert p["VersionStages"] == ["AWSCURRENT"]
    assert srv.aws("secretsmanager", "get-secret-value", "--secret-id", name)["SecretString"] == "second"
    prev = srv.aws("secretsmanager", "get-secret-value", "--secret-id", name, "--version-stage", "AWSPREVIOUS")
    assert json.loads(prev["SecretString"]) == doc and prev["VersionId"] == v1
    by_id = srv.aws("secretsmanager", "get-secret-value", "--secret-id", name, "--version-id", v1)
    assert by_id["VersionStages"] == ["AWSPREVIOUS"]

    u = srv.aws("secretsmanager", "update-secret", "--secret-id", name, "--secret-string", "third",
                "--description", "still the database")
    v3 = u["VersionId"]
    d = srv.aws("secretsmanager", "describe-secret", "--secret-id", name)
    assert d["Description"] == "still the database"
    assert d["VersionIdsToStages"] == {v3: ["AWSCURRENT"], v2: ["AWSPREVIOUS"]}
    assert d["Tags"] == [{"Key": "team", "Value": "payments"}]
    assert "KmsKeyId" not in d and "DeletedDate" not in d
    assert d["LastChangedDate"] and d["CreatedDate"]

    listed = srv.aws("secretsmanager", "list-secrets", "--filters", f"Key=name,Values={name}")["SecretList"]
    assert [s["Name"] for s in listed] == [name]
    assert listed[0]["SecretVersionsToStages"][v3] == ["AWSCURRENT"]

    # Deletion with a recovery window: reads are refused, restore brings it back.
    dl = srv.aws("secretsmanager", "delete-secret", "--secret-id", name, "--recovery-window-in-days", "7")
    assert dl["ARN"] == arn and dl["DeletionDate"]
    err = srv.aws_error("secretsmanager", "get-secret-value", "--secret-id", name)
    assert err.code == "InvalidRequestException"
    assert err.message == "You can't perform this operation on the secret because it was marked for deletion."
    assert "DeletedDate" in srv.aws("secretsmanager", "describe-secret", "--secret-id", name)
    names = [s["Name"] for s in srv.aws("secretsmanager", "list-secrets")["SecretList"]]
    assert name not in names
    names = [s["Name"] for s in srv.aws("secretsmanager", "list-secrets", "--include-planned-deletion")["SecretList"]]
    assert name in names
    srv.aws("secretsmanager", "restore-secret", "--secret-id", name)
    assert srv.aws("secretsmanager", "get-secret-value", "--secret-id", name)["SecretString"] == "third"

    err = srv.aws_error("secretsmanager", "delete-secret", "--secret-id", name, "--recovery-window-in-days", "3")
    assert err.code == "InvalidParameterException"
    srv.aws("secretsmanager", "delete-secret", "--secret-id", name, "--force-delete-without-recovery")
    err = srv.aws_error("secretsmanager", "describe-secret", "--secret-id", name)
    assert err.code == "ResourceNotFoundException"
    assert err.message == "Secrets Manager can't find the specified secret."


def test_cli_json_secret_and_errors(srv):
    name = unique("json")
    srv.aws("secretsmanager", "create-secret", "--name", name,
            "--secret-string", '{"host":"db.internal","port":5432}')
    err = srv.aws_error("secretsmanager", "create-secret", "--name", name, "--secret-string", "x")
    assert err.code == "ResourceExistsException"
    assert err.message == f"The operation failed because the secret {name} already exists."
    err = srv.aws_error("secretsmanager", "get-secret-value", "--secret-id", name, "--version-stage", "AWSPENDING")
    assert err.code == "ResourceNotFoundException"
    assert "staging label: AWSPENDING" in err.message
    got = json.loads(srv.aws("secretsmanager", "get-secret-value", "--secret-id", name)["SecretString"])
    assert got == {"host": "db.internal", "port": 5432}


# -- Secrets Manager with boto3 -----------------------------------------------

def test_boto3_binary_partial_arn_pagination_stages_and_tags(srv, sm):
    name = unique("bin")
    blob = os.urandom(64)
    c = sm.create_secret(Name=name, SecretBinary=blob)
    got = sm.get_secret_value(SecretId=name)
    assert got["SecretBinary"] == blob and "SecretString" not in got
    partial = c["ARN"].rsplit("-", 1)[0]
    assert sm.get_secret_value(SecretId=partial)["SecretBinary"] == blob

    prefix = unique("page")
    for i in range(7):
        sm.create_secret(Name=f"{prefix}/s{i}", SecretString=str(i), Tags=[{"Key": "n", "Value": str(i)}])
    pages = list(sm.get_paginator("list_secrets").paginate(
        Filters=[{"Key": "name", "Values": [prefix]}], PaginationConfig={"PageSize": 3}))
    assert [len(p["SecretList"]) for p in pages] == [3, 3, 1]
    assert sorted(s["Name"] for p in pages for s in p["SecretList"]) == [f"{prefix}/s{i}" for i in range(7)]
    assert len(sm.list_secrets(Filters=[{"Key": "tag-value", "Values": ["3"]},
                                        {"Key": "name", "Values": [prefix]}])["SecretList"]) == 1

    s = f"{prefix}/s0"
    token = str(uuid.uuid4())
    pending = sm.put_secret_value(SecretId=s, SecretString="next", VersionStages=["AWSPENDING"],
                                  ClientRequestToken=token)
    assert pending["VersionId"] == token
    # The same request again is accepted; another value under the token is not.
    sm.put_secret_value(SecretId=s, SecretString="next", VersionStages=["AWSPENDING"], ClientRequestToken=token)
    code, _ = error_of(sm.put_secret_value, SecretId=s, SecretString="other", ClientRequestToken=token)
    assert code == "ResourceExistsException"
    current = sm.get_secret_value(SecretId=s)["VersionId"]
    sm.update_secret_version_stage(SecretId=s, VersionStage="AWSCURRENT", MoveToVersionId=token,
                                   RemoveFromVersionId=current)
    assert sm.get_secret_value(SecretId=s)["SecretString"] == "next"
    assert sm.get_secret_value(SecretId=s, VersionStage="AWSPREVIOUS")["SecretString"] == "0"
    versions = sm.list_secret_version_ids(SecretId=s)["Versions"]
    assert {v["VersionId"]: sorted(v["VersionStages"]) for v in versions} == {
        token: ["AWSCURRENT", "AWSPENDING"], current: ["AWSPREVIOUS"]}

    sm.tag_resource(SecretId=s, Tags=[{"Key": "env", "Value": "prod"}])
    sm.untag_resource(SecretId=s, TagKeys=["n"])
    assert sm.describe_secret(SecretId=s)["Tags"] == [{"Key": "env", "Value": "prod"}]
    pw = sm.get_random_password(PasswordLength=24, ExcludePunctuation=True)["RandomPassword"]
    assert len(pw) == 24 and pw.isalnum()


def test_resource_policy_explicit_deny_stops_the_administrator(srv, sm):
    name = unique("guarded")
    arn = sm.create_secret(Name=name, SecretString="guarded-value")["ARN"]
    account = arn.split(":")[4]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(policy))
    assert json.loads(sm.get_resource_policy(SecretId=name)["ResourcePolicy"]) == policy
    code, msg = error_of(sm.get_secret_value, SecretId=name)
    assert code == "AccessDeniedException"
    assert f"arn:aws:iam::{account}:root is not authorized to perform: secretsmanager:GetSecretValue" in msg
    assert "explicit deny in a resource-based policy" in msg
    err = srv.aws_error("secretsmanager", "get-secret-value", "--secret-id", name)
    assert err.code == "AccessDeniedException"
    # Other actions are not denied; removing the policy restores access.
    assert sm.describe_secret(SecretId=name)["Name"] == name
    sm.delete_resource_policy(SecretId=name)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "guarded-value"
    code, _ = error_of(sm.put_resource_policy, SecretId=name, ResourcePolicy="{not json")
    assert code == "MalformedPolicyDocumentException"


def test_customer_key_and_the_aws_managed_key(srv, sm):
    kms = srv.client("kms")
    key = kms.create_key(Description="secrets key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/secrets-e2e", TargetKeyId=key["KeyId"])
    name = unique("cmk")
    sm.create_secret(Name=name, SecretString="under my key", KmsKeyId="alias/secrets-e2e")
    d = sm.describe_secret(SecretId=name)
    assert d["KmsKeyId"] == "alias/secrets-e2e"
    versions = sm.list_secret_version_ids(SecretId=name)["Versions"]
    assert versions[0]["KmsKeyIds"] == [key["Arn"]]
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "under my key"
    # A disabled key cannot open the secret.
    kms.disable_key(KeyId=key["KeyId"])
    code, msg = error_of(sm.get_secret_value, SecretId=name)
    assert code == "DecryptionFailure", msg
    kms.enable_key(KeyId=key["KeyId"])
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "under my key"

    # Secrets without KmsKeyId are under aws/secretsmanager, an AWS managed
    # key the administrator can see but not use directly.
    managed = kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    code, _ = error_of(kms.generate_data_key, KeyId="alias/aws/secretsmanager", KeySpec="AES_256")
    assert code == "AccessDeniedException"
    policy = json.loads(kms.get_key_policy(KeyId=managed["KeyId"], PolicyName="default")["Policy"])
    via = [s["Condition"]["StringEquals"].get("kms:ViaService") for s in policy["Statement"] if "Condition" in s]
    assert f"secretsmanager.{srv.region}.amazonaws.com" in via


# -- SSM Parameter Store ---------------------------------------------------------

def test_ssm_cli_types_versions_paths_history_and_delete(srv):
    base = "/" + unique("app")
    r = srv.aws("ssm", "put-parameter", "--name", f"{base}/url", "--value", "a.example:443",
                "--type", "String", "--description", "endpoint")
    assert r == {"Version": 1, "Tier": "Standard"}
    err = srv.aws_error("ssm", "put-parameter", "--name", f"{base}/url", "--value", "x", "--type", "String")
    assert err.code == "ParameterAlreadyExists"
    assert srv.aws("ssm", "put-parameter", "--name", f"{base}/url", "--value", "b.example:443",
                   "--overwrite")["Version"] == 2
    srv.aws("ssm", "put-parameter", "--name", f"{base}/hosts", "--value", "a,b,c", "--type", "StringList")
    secret = "pw-" + uuid.uuid4().hex
    srv.aws("ssm", "put-parameter", "--name", f"{base}/db/password", "--value", secret, "--type", "SecureString")

    p = srv.aws("ssm", "get-parameter", "--name", f"{base}/url")["Parameter"]
    assert p["Value"] == "b.example:443" and p["Version"] == 2 and p["Type"] == "String"
    account = p["ARN"].split(":")[4]
    assert p["ARN"] == f"arn:aws:ssm:{srv.region}:{account}:parameter{base}/url"
    assert srv.aws("ssm", "get-parameter", "--name", f"{base}/url:1")["Parameter"]["Value"] == "a.example:443"
    assert srv.aws("ssm", "get-parameter", "--name", f"{base}/hosts")["Parameter"]["Type"] == "StringList"

    sealed = srv.aws("ssm", "get-parameter", "--name", f"{base}/db/password")["Parameter"]
    assert sealed["Type"] == "SecureString" and sealed["Value"] != secret
    base64.b64decode(sealed["Value"], validate=True)
    opened = srv.aws("ssm", "get-parameter", "--name", f"{base}/db/password", "--with-decryption")["Parameter"]
    assert opened["Value"] == secret

    g = srv.aws("ssm", "get-parameters", "--names", f"{base}/url", f"{base}/nope", f"{base}/db/password",
                "--with-decryption")
    assert g["InvalidParameters"] == [f"{base}/nope"]
    assert {x["Name"]: x["Value"] for x in g["Parameters"]} == {f"{base}/url": "b.example:443",
                                                                 f"{base}/db/password": secret}

    top = srv.aws("ssm", "get-parameters-by-path", "--path", base)["Parameters"]
    assert sorted(x["Name"] for x in top) == [f"{base}/hosts", f"{base}/url"]
    deep = srv.aws("ssm", "get-parameters-by-path", "--path", base, "--recursive", "--with-decryption")["Parameters"]
    assert {x["Name"]: x["Value"] for x in deep}[f"{base}/db/password"] == secret
    assert len(deep) == 3

    hist = srv.aws("ssm", "get-parameter-history", "--name", f"{base}/url")["Parameters"]
    assert [(h["Version"], h["Value"]) for h in hist] == [(1, "a.example:443"), (2, "b.example:443")]
    assert hist[1]["Description"] == "endpoint"

    described = srv.aws("ssm", "describe-parameters", "--parameter-filters",
                        f"Key=Path,Option=Recursive,Values={base}", "Key=Type,Values=SecureString")["Parameters"]
    assert [x["Name"] for x in described] == [f"{base}/db/password"]
    assert described[0]["KeyId"] == "alias/aws/ssm"

    srv.aws("ssm", "delete-parameter", "--name", f"{base}/url")
    err = srv.aws_error("ssm", "get-parameter", "--name", f"{base}/url")
    assert err.code == "ParameterNotFound"
    d = srv.aws("ssm", "delete-parameters", "--names", f"{base}/hosts", f"{base}/missing")
    assert d["DeletedParameters"] == [f"{base}/hosts"] and d["InvalidParameters"] == [f"{base}/missing"]


def test_ssm_boto3_customer_key_pagination_and_validation(srv, ssm):
    kms = srv.client("kms")
    key = kms.create_key(Description="ssm key")["KeyMetadata"]
    base = "/" + unique("cmk")
    ssm.put_parameter(Name=f"{base}/token", Value="t0ken", Type="SecureString", KeyId=key["KeyId"])
    meta = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [f"{base}/token"]}])["Parameters"]
    assert meta[0]["KeyId"] == key["KeyId"]
    assert ssm.get_parameter(Name=f"{base}/token", WithDecryption=True)["Parameter"]["Value"] == "t0ken"
    # The audit trail names the customer key and the parameter's ARN.
    arn = ssm.get_parameter(Name=f"{base}/token")["Parameter"]["ARN"]
    dec = [e for e in read_audit(srv) if e["eventName"] == "Decrypt"
           and e["requestParameters"].get("encryptionContext") == {"PARAMETER_ARN": arn}]
    assert dec and dec[-1]["resources"][0]["ARN"] == key["Arn"]
    assert dec[-1]["sourceIPAddress"] == "ssm.amazonaws.com"

    for i in range(5):
        ssm.put_parameter(Name=f"{base}/many/p{i}", Value=str(i), Type="String")
    pages = list(ssm.get_paginator("get_parameters_by_path").paginate(
        Path=f"{base}/many", PaginationConfig={"PageSize": 2}))
    assert [len(p["Parameters"]) for p in pages] == [2, 2, 1]

    code, msg = error_of(ssm.put_parameter, Name=f"{base}/x", Value="v")
    assert code == "ValidationException" and msg == "A parameter type is required when you create a parameter."
    code, _ = error_of(ssm.put_parameter, Name="/aws/reserved", Value="v", Type="String")
    assert code == "ValidationException"
    code, _ = error_of(ssm.put_parameter, Name=f"{base}/k", Value="v", Type="SecureString",
                       KeyId="alias/no-such-key")
    assert code == "InvalidKeyId"


# -- sealing: nothing in plaintext on disk, every read audited --------------------

def test_no_plaintext_on_disk_and_a_decrypt_record_per_read(srv, sm, ssm):
    markers = {k: f"MARKER-{k}-{uuid.uuid4().hex}" for k in ("secret", "json", "previous", "param", "hist")}
    name = unique("marker")
    c = sm.create_secret(Name=name, SecretString=markers["previous"])
    sm.put_secret_value(SecretId=name, SecretString=markers["secret"])
    sm.create_secret(Name=unique("marker-json"), SecretString=json.dumps({"password": markers["json"]}))
    pname = "/" + unique("marker")
    ssm.put_parameter(Name=pname, Value=markers["hist"], Type="SecureString")
    ssm.put_parameter(Name=pname, Value=markers["param"], Type="SecureString", Overwrite=True)

    before = read_audit(srv)
    reads = 3
    for _ in range(reads):
        got = sm.get_secret_value(SecretId=name)
        assert got["SecretString"] == markers["secret"]
    version = got["VersionId"]
    assert ssm.get_parameter(Name=pname, WithDecryption=True)["Parameter"]["Value"] == markers["param"]

    after = read_audit(srv)[len(before):]
    mine = [e for e in after if e["eventName"] == "Decrypt" and e["requestParameters"].get("encryptionContext")
            == {"SecretARN": c["ARN"], "SecretVersionId": version}]
    assert len(mine) == reads
    for e in mine:
        assert e["userIdentity"]["type"] == "Root" and "errorCode" not in e
        assert e["sourceIPAddress"] == "secretsmanager.amazonaws.com"

    # Flush everything the server holds, then look at every byte it wrote.
    assert srv.restart() == 0
    needles = [m.encode() for m in markers.values()]
    needles += [base64.b64encode(n) for n in needles]
    assert [h for d in srv.state_dirs() for h in files_containing(d, needles)] == []
    with open(srv.log_path, "rb") as f:
        log = f.read()
    assert not [n for n in needles if n in log]
    # And the values are still there after the restart.
    assert srv.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"] == markers["secret"]
    assert srv.client("ssm").get_parameter(Name=pname, WithDecryption=True)["Parameter"]["Value"] == markers["param"]
