"""IAM and STS end to end, with the real AWS CLI and boto3: roles, users,
access keys, inline and managed policies, AssumeRole, the credential table
(inactive and deleted keys, session tokens, deleted roles), and
`ferry server --account-id`.

No tasks run here: these tests need no root resources.
"""

import datetime
import json
import os
import subprocess
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import FerryServer, ferry_bin, state_files


def trust(principal):
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
    })


ECS_READ_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["ecs:Describe*", "ecs:List*"], "Resource": "*"}],
}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def code(err):
    return err.response["Error"]["Code"]


def user_env(srv, key, secret, token=None):
    """The AWS CLI's environment with an IAM user's (or session's) keys:
    environment credentials win over the administrator's file."""
    extra = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    if token:
        extra["AWS_SESSION_TOKEN"] = token
    return srv.env(**extra)


def new_user(srv, name, policy=None):
    """A user with an access key (and an inline policy); returns (key, secret)."""
    srv.aws("iam", "create-user", "--user-name", name)
    if policy is not None:
        srv.aws("iam", "put-user-policy", "--user-name", name, "--policy-name", "inline",
                "--policy-document", json.dumps(policy))
    k = srv.aws("iam", "create-access-key", "--user-name", name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def test_roles_round_trip_with_policies_and_errors(ferry_server_module):
    srv = ferry_server_module
    name = unique("app")
    doc = trust({"Service": "ecs-tasks.amazonaws.com"})
    role = srv.aws("iam", "create-role", "--role-name", name, "--path", "/svc/",
                   "--assume-role-policy-document", doc, "--description", "the app",
                   "--tags", "Key=team,Value=payments")["Role"]
    account = srv.aws("sts", "get-caller-identity")["Account"]
    assert role["Arn"] == f"arn:aws:iam::{account}:role/svc/{name}"
    assert role["RoleId"].startswith("AROA") and len(role["RoleId"]) == 21
    assert role["AssumeRolePolicyDocument"] == json.loads(doc)
    assert role["MaxSessionDuration"] == 3600

    got = srv.aws("iam", "get-role", "--role-name", name)["Role"]
    assert got["Arn"] == role["Arn"] and got["Description"] == "the app"
    assert got["Tags"] == [{"Key": "team", "Value": "payments"}]
    assert name in [r["RoleName"] for r in srv.aws("iam", "list-roles")["Roles"]]
    assert name in [r["RoleName"] for r in srv.aws("iam", "list-roles", "--path-prefix", "/svc/")["Roles"]]

    # The same name in another case is the same role.
    e = srv.aws_error("iam", "create-role", "--role-name", name.upper(), "--assume-role-policy-document", doc)
    assert e.code == "EntityAlreadyExists", e.stderr
    e = srv.aws_error("iam", "create-role", "--role-name", unique("bad"),
                      "--assume-role-policy-document", '{"Statement": [nope')
    assert e.code == "MalformedPolicyDocument", e.stderr
    e = srv.aws_error("iam", "create-role", "--role-name", unique("bad"), "--assume-role-policy-document",
                      json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole",
                                                 "Resource": "*"}]}))
    assert e.code == "MalformedPolicyDocument" and "Resource" in e.message, e.stderr

    # An inline policy comes back as the JSON document it was.
    policy = {"Version": "2012-10-17",
              "Statement": [{"Sid": "Enc", "Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}]}
    srv.aws("iam", "put-role-policy", "--role-name", name, "--policy-name", "enc",
            "--policy-document", json.dumps(policy))
    got = srv.aws("iam", "get-role-policy", "--role-name", name, "--policy-name", "enc")
    assert got == {"RoleName": name, "PolicyName": "enc", "PolicyDocument": policy}
    assert srv.aws("iam", "list-role-policies", "--role-name", name)["PolicyNames"] == ["enc"]
    e = srv.aws_error("iam", "put-role-policy", "--role-name", name, "--policy-name", "bad",
                      "--policy-document", '{"Statement": [{"Effect": "Allow"}]}')
    assert e.code == "MalformedPolicyDocument", e.stderr
    e = srv.aws_error("iam", "get-role-policy", "--role-name", name, "--policy-name", "nope")
    assert e.code == "NoSuchEntity", e.stderr

    exec_policy = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    srv.aws("iam", "attach-role-policy", "--role-name", name, "--policy-arn", exec_policy)
    attached = srv.aws("iam", "list-attached-role-policies", "--role-name", name)["AttachedPolicies"]
    assert attached == [{"PolicyName": "AmazonECSTaskExecutionRolePolicy", "PolicyArn": exec_policy}]
    e = srv.aws_error("iam", "attach-role-policy", "--role-name", name,
                      "--policy-arn", "arn:aws:iam::aws:policy/NoSuchPolicy")
    assert e.code == "NoSuchEntity", e.stderr

    # Tags and the trust policy change.
    srv.aws("iam", "tag-role", "--role-name", name, "--tags", "Key=env,Value=prod")
    srv.aws("iam", "untag-role", "--role-name", name, "--tag-keys", "team")
    assert srv.aws("iam", "list-role-tags", "--role-name", name)["Tags"] == [{"Key": "env", "Value": "prod"}]
    new_trust = trust({"AWS": f"arn:aws:iam::{account}:root"})
    srv.aws("iam", "update-assume-role-policy", "--role-name", name, "--policy-document", new_trust)
    assert srv.aws("iam", "get-role", "--role-name", name)["Role"]["AssumeRolePolicyDocument"] == json.loads(new_trust)

    # DeleteRole refuses while the role has policies.
    e = srv.aws_error("iam", "delete-role", "--role-name", name)
    assert e.code == "DeleteConflict", e.stderr
    srv.aws("iam", "delete-role-policy", "--role-name", name, "--policy-name", "enc")
    assert srv.aws_error("iam", "delete-role", "--role-name", name).code == "DeleteConflict"
    srv.aws("iam", "detach-role-policy", "--role-name", name, "--policy-arn", exec_policy)
    srv.aws("iam", "delete-role", "--role-name", name)
    e = srv.aws_error("iam", "get-role", "--role-name", name)
    assert e.code == "NoSuchEntity" and name in e.message, e.stderr


def test_boto3_sees_the_same_shapes(ferry_server_module):
    iam = ferry_server_module.client("iam")
    name = unique("b3")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust({"Service": "ecs-tasks.amazonaws.com"}),
                    MaxSessionDuration=7200)
    role = iam.get_role(RoleName=name)["Role"]
    assert role["MaxSessionDuration"] == 7200
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert role["CreateDate"].tzinfo is not None
    paginator = iam.get_paginator("list_roles")
    names = [r["RoleName"] for page in paginator.paginate(PaginationConfig={"PageSize": 1}) for r in page["Roles"]]
    assert name in names
    with pytest.raises(ClientError) as e:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust({"Service": "ecs-tasks.amazonaws.com"}))
    assert code(e.value) == "EntityAlreadyExists"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as e:
        iam.create_role(RoleName=unique("x"), AssumeRolePolicyDocument=trust({"Service": "ecs-tasks.amazonaws.com"}),
                        MaxSessionDuration=60000)
    assert code(e.value) == "ValidationError"
    iam.delete_role(RoleName=name)


def test_user_keys_authenticate_until_deactivated_or_deleted(ferry_server_module):
    srv = ferry_server_module
    name = unique("bob")
    user = srv.aws("iam", "create-user", "--user-name", name)["User"]
    assert user["UserId"].startswith("AIDA") and user["Arn"].endswith(f":user/{name}")
    assert name in [u["UserName"] for u in srv.aws("iam", "list-users")["Users"]]
    k = srv.aws("iam", "create-access-key", "--user-name", name)["AccessKey"]
    key, secret = k["AccessKeyId"], k["SecretAccessKey"]
    assert key.startswith("AKIA") and len(key) == 20 and len(secret) == 40 and k["Status"] == "Active"

    # The key works for GetCallerIdentity (which needs no permission).
    me = srv.aws("sts", "get-caller-identity", env=user_env(srv, key, secret))
    assert me["Arn"] == user["Arn"] and me["UserId"] == user["UserId"]
    # ... but for nothing else without a policy.
    e = srv.aws_error("iam", "list-roles", env=user_env(srv, key, secret))
    assert e.code == "AccessDenied" and f"User: {user['Arn']} is not authorized to perform: iam:ListRoles" in e.message

    # Two keys at most.
    k2 = srv.aws("iam", "create-access-key", "--user-name", name)["AccessKey"]
    assert srv.aws_error("iam", "create-access-key", "--user-name", name).code == "LimitExceeded"
    listed = srv.aws("iam", "list-access-keys", "--user-name", name)["AccessKeyMetadata"]
    assert sorted(m["AccessKeyId"] for m in listed) == sorted([key, k2["AccessKeyId"]])
    assert all("SecretAccessKey" not in m for m in listed)

    # Inactive keys are refused at authentication, active ones work again.
    srv.aws("iam", "update-access-key", "--user-name", name, "--access-key-id", key, "--status", "Inactive")
    e = srv.aws_error("sts", "get-caller-identity", env=user_env(srv, key, secret))
    assert e.code == "InvalidClientTokenId", e.stderr
    assert e.message == "The security token included in the request is invalid."
    sts = srv.client("sts", access_key=key, secret_key=secret)
    with pytest.raises(ClientError) as err:
        sts.get_caller_identity()
    assert code(err.value) == "InvalidClientTokenId"
    ecs = srv.client("ecs", access_key=key, secret_key=secret)
    with pytest.raises(ClientError) as err:
        ecs.list_clusters()
    assert code(err.value) == "UnrecognizedClientException"
    srv.aws("iam", "update-access-key", "--user-name", name, "--access-key-id", key, "--status", "Active")
    assert srv.aws("sts", "get-caller-identity", env=user_env(srv, key, secret))["Arn"] == user["Arn"]

    # A deleted key is refused; a user with keys cannot be deleted.
    assert srv.aws_error("iam", "delete-user", "--user-name", name).code == "DeleteConflict"
    srv.aws("iam", "delete-access-key", "--user-name", name, "--access-key-id", key)
    e = srv.aws_error("sts", "get-caller-identity", env=user_env(srv, key, secret))
    assert e.code == "InvalidClientTokenId", e.stderr
    assert srv.aws_error("iam", "delete-access-key", "--user-name", name,
                         "--access-key-id", key).code == "NoSuchEntity"
    srv.aws("iam", "delete-access-key", "--user-name", name, "--access-key-id", k2["AccessKeyId"])
    srv.aws("iam", "delete-user", "--user-name", name)
    assert srv.aws_error("iam", "get-user", "--user-name", name).code == "NoSuchEntity"


def test_user_policies_decide_iam_actions(ferry_server_module):
    srv = ferry_server_module
    name = unique("reader")
    key, secret = new_user(srv, name, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"}]})
    env = user_env(srv, key, secret)
    assert "Roles" in srv.aws("iam", "list-roles", env=env)
    assert srv.aws("iam", "get-user", env=env)["User"]["UserName"] == name
    got = srv.aws("iam", "get-user-policy", "--user-name", name, "--policy-name", "inline")
    assert got["PolicyDocument"]["Statement"][0]["Action"] == ["iam:Get*", "iam:List*"]
    e = srv.aws_error("iam", "create-user", "--user-name", unique("x"), env=env)
    assert e.code == "AccessDenied", e.stderr
    # An attached managed policy applies from the next request on; an
    # explicit deny wins over it.
    srv.aws("iam", "attach-user-policy", "--user-name", name, "--policy-arn",
            "arn:aws:iam::aws:policy/AdministratorAccess")
    other = unique("made")
    srv.aws("iam", "create-user", "--user-name", other, env=env)
    srv.aws("iam", "put-user-policy", "--user-name", name, "--policy-name", "deny", "--policy-document",
            json.dumps({"Statement": [{"Effect": "Deny", "Action": "iam:DeleteUser", "Resource": "*"}]}))
    e = srv.aws_error("iam", "delete-user", "--user-name", other, env=env)
    assert e.code == "AccessDenied" and "explicit deny" in e.message, e.stderr
    assert srv.aws("iam", "list-attached-user-policies", "--user-name", name)["AttachedPolicies"][0][
        "PolicyName"] == "AdministratorAccess"
    srv.aws("iam", "delete-user", "--user-name", other)


def test_ecs_read_only_user_can_describe_but_not_run(ferry_server_module):
    """A user's identity policies at the listener's authorization gate."""
    srv = ferry_server_module
    name = unique("ecsro")
    key, secret = new_user(srv, name, ECS_READ_ONLY)
    env = user_env(srv, key, secret)
    srv.aws("ecs", "create-cluster", "--cluster-name", "ro-test")
    assert "clusterArns" in srv.aws("ecs", "list-clusters", env=env)
    assert srv.aws("ecs", "describe-clusters", "--clusters", "ro-test", env=env)["clusters"][0][
        "clusterName"] == "ro-test"
    e = srv.aws_error("ecs", "create-cluster", "--cluster-name", "not-allowed", env=env)
    assert e.code == "AccessDeniedException", e.stderr
    e = srv.aws_error("ecs", "run-task", "--cluster", "ro-test", "--task-definition", "nothing:1", env=env)
    assert e.code == "AccessDeniedException", e.stderr


def test_assume_role_by_trust_policy(ferry_server_module):
    srv = ferry_server_module
    account = srv.aws("sts", "get-caller-identity")["Account"]
    bob = unique("bob")
    key, secret = new_user(srv, bob, {"Statement": [
        {"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"}]})
    bob_arn = f"arn:aws:iam::{account}:user/{bob}"
    role = unique("deploy")
    role_arn = srv.aws("iam", "create-role", "--role-name", role,
                       "--assume-role-policy-document", trust({"AWS": bob_arn}))["Role"]["Arn"]
    srv.aws("iam", "put-role-policy", "--role-name", role, "--policy-name", "users", "--policy-document",
            json.dumps({"Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]}))
    other = unique("private")
    other_arn = srv.aws("iam", "create-role", "--role-name", other, "--assume-role-policy-document",
                        trust({"Service": "ecs-tasks.amazonaws.com"}))["Role"]["Arn"]

    sts = srv.client("sts", access_key=key, secret_key=secret)
    out = sts.assume_role(RoleArn=role_arn, RoleSessionName="ci-run", DurationSeconds=900)
    creds, user = out["Credentials"], out["AssumedRoleUser"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["SecretAccessKey"]) == 40
    assert user["Arn"] == f"arn:aws:sts::{account}:assumed-role/{role}/ci-run"
    assert user["AssumedRoleId"].startswith("AROA") and user["AssumedRoleId"].endswith(":ci-run")
    left = (creds["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 880 < left <= 900, left

    session = dict(access_key=creds["AccessKeyId"], secret_key=creds["SecretAccessKey"])
    sess = boto3.session.Session(aws_access_key_id=creds["AccessKeyId"],
                                 aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["SessionToken"], region_name=srv.region)
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, proxies={})
    as_role = sess.client("sts", endpoint_url=srv.endpoint, config=cfg)
    ident = as_role.get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{account}:assumed-role/{role}/ci-run"
    assert ident["UserId"] == user["AssumedRoleId"] and ident["Account"] == account
    # The session has the role's permissions, not bob's.
    iam_as_role = sess.client("iam", endpoint_url=srv.endpoint, config=cfg)
    assert "Users" in iam_as_role.list_users()
    with pytest.raises(ClientError) as e:
        iam_as_role.list_roles()
    assert code(e.value) == "AccessDenied"
    # The CLI with the session's environment agrees.
    env = user_env(srv, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert srv.aws("sts", "get-caller-identity", env=env)["Arn"].endswith(f":assumed-role/{role}/ci-run")

    # A wrong or missing token is refused.
    bad = boto3.session.Session(aws_access_key_id=creds["AccessKeyId"],
                                aws_secret_access_key=creds["SecretAccessKey"],
                                aws_session_token="x" + creds["SessionToken"][1:], region_name=srv.region)
    with pytest.raises(ClientError) as e:
        bad.client("sts", endpoint_url=srv.endpoint, config=cfg).get_caller_identity()
    assert code(e.value) == "InvalidClientTokenId"
    with pytest.raises(ClientError) as e:
        srv.client("sts", **session).get_caller_identity()
    assert code(e.value) == "InvalidClientTokenId"

    # A role that does not trust the caller.
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=other_arn, RoleSessionName="nope")
    assert code(e.value) == "AccessDenied"
    assert e.value.response["Error"]["Message"] == \
        f"User: {bob_arn} is not authorized to perform: sts:AssumeRole on resource: {other_arn}"
    e = srv.aws_error("sts", "assume-role", "--role-arn", other_arn, "--role-session-name", "cli",
                      env=user_env(srv, key, secret))
    assert e.code == "AccessDenied", e.stderr
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="long", DurationSeconds=7200)
    assert code(e.value) == "ValidationError"

    # Deleting the role revokes its sessions (ferry's choice, see docs/iam.md).
    srv.aws("iam", "delete-role-policy", "--role-name", role, "--policy-name", "users")
    srv.aws("iam", "delete-role", "--role-name", role)
    with pytest.raises(ClientError) as e:
        as_role.get_caller_identity()
    assert code(e.value) == "InvalidClientTokenId"


def test_assume_role_sessions_survive_a_restart(ferry_server):
    srv = ferry_server
    account = srv.aws("sts", "get-caller-identity")["Account"]
    role = "restart-role"
    role_arn = srv.aws("iam", "create-role", "--role-name", role, "--assume-role-policy-document",
                       trust({"AWS": f"arn:aws:iam::{account}:root"}))["Role"]["Arn"]
    # The administrator may assume a role that trusts the account.
    creds = srv.aws("sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "admin")["Credentials"]
    env = user_env(srv, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert srv.aws("sts", "get-caller-identity", env=env)["Arn"] == \
        f"arn:aws:sts::{account}:assumed-role/{role}/admin"
    key, secret = new_user(srv, "keeper")
    assert srv.restart() == 0
    assert srv.aws("sts", "get-caller-identity", env=env)["Arn"].endswith(f":assumed-role/{role}/admin")
    assert srv.aws("sts", "get-caller-identity", env=user_env(srv, key, secret))["Arn"].endswith(":user/keeper")
    # Neither the session secret nor the user's secret is on disk in plaintext.
    for path in state_files(srv):
        f = os.path.basename(path)
        if f == "credentials":
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        for s in (secret, creds["SecretAccessKey"], creds["SessionToken"]):
            assert s.encode() not in data, f"{s[:4]}... found in {f}"


def test_account_id_is_chosen_when_the_data_dir_is_created(tmp_path):
    data = str(tmp_path / "data")
    srv = FerryServer(data, extra_args=["--account-id", "012345678910"])
    srv.start()
    try:
        ident = srv.aws("sts", "get-caller-identity")
        assert ident == {"UserId": "012345678910", "Account": "012345678910",
                         "Arn": "arn:aws:iam::012345678910:root"}
        # The source document's executionRoleArn names this role (the test
        # server makes it as a new account's console does).
        arn = srv.aws("iam", "get-role", "--role-name", "ecsTaskExecutionRole")["Role"]["Arn"]
        assert arn == "arn:aws:iam::012345678910:role/ecsTaskExecutionRole"
    finally:
        assert srv.stop() == 0
    # Another account id on the same data directory (and store) is refused, clearly.
    try:
        p = subprocess.run([ferry_bin(), "server", "--data-dir", data, "--listen", "127.0.0.1:0",
                            "--account-id", "111122223333", *srv.store_args()],
                           capture_output=True, text=True, timeout=30)
    finally:
        srv.close()  # its PostgreSQL cluster, if it has one
    assert p.returncode != 0
    assert "belongs to account 012345678910" in p.stderr and "111122223333" in p.stderr, p.stderr
    p = subprocess.run([ferry_bin(), "server", "--data-dir", str(tmp_path / "other"), "--listen", "127.0.0.1:0",
                        "--account-id", "12345"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "12 digits" in p.stderr, p.stderr
