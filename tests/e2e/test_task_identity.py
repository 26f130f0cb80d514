"""Task identity on a real `ferry server`: the task role's credentials, the
execution role, and container secrets, with the real AWS CLI and boto3.

- A role trusted by `ecs-tasks.amazonaws.com` may `kms:Encrypt` with one
  key. A task with that role fetches its credentials from inside the task
  with busybox `wget` at `http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
  and prints them to its awslogs stream (a test-only task). With them,
  boto3 is the assumed role (GetCallerIdentity: the task id is the session
  name), may Encrypt with that key, gets AccessDeniedException with the
  other key and on `ecs:ListClusters`, and is refused once the task has
  stopped. A second task cannot fetch the first task's credentials: in its
  namespace 169.254.170.2 is its own endpoint, which does not know that id.
- A role whose trust policy does not allow `ecs-tasks.amazonaws.com` makes
  the task fail to start, naming the role.
- A task with three secrets (a whole Secrets Manager secret, a JSON key of
  another, a SecureString parameter) sees them in its environment (it
  prints digests of them, not the values); a task naming a missing secret
  fails with Fargate's reason; no file of the data directory (outside the
  task's mounted plaintext view, while it runs) and not the server's log
  holds a secret value in plaintext.

Needs the IAM/STS and Secrets Manager/SSM services on the listener (their
issue), the task runtime (root) and the busybox stand-in for httpd:2.4.
"""

import datetime
import hashlib
import json
import os
import time

import pytest
from botocore.exceptions import ClientError

from conftest import allocated_data, import_httpd, wait_status
from test_ecs_run import awslogs, register_doc, run_family

GROUP = "/ecs/task-identity"

TRUST_ECS_TASKS = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
TRUST_EC2 = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}

# What a new account's console gives ecsTaskExecutionRole
# (AmazonECSTaskExecutionRolePolicy) for the logs, plus what the ECS
# developer guide asks for secrets: GetSecretValue, GetParameters and the
# KMS Decrypt behind them (GetParameter: ferry's in-process SSM read).
EXEC_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
     "Resource": "*"},
    {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameters", "ssm:GetParameter",
                                   "kms:Decrypt"], "Resource": "*"},
]}

# The task prints its credentials (test-only!) as one line of JSON.
CREDS_SCRIPT = r"""
sleep 1
echo "URI=$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
echo "CREDS=$(wget -qO- http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI | tr -d '\n')"
echo DONE
exec sleep 3600
"""

# Another task with the same role: its own credentials work, the first
# task's id does not.
PROBE_SCRIPT = r"""
sleep 1
echo "OWN=$(wget -qO- http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI | tr -d '\n')"
echo "OTHER=$(wget -qO- http://169.254.170.2%(other)s 2>/dev/null | tr -d '\n')"
echo "OTHER_ERR=$(wget -qO- http://169.254.170.2%(other)s 2>&1 >/dev/null | tr -d '\n')"
echo DONE
exec sleep 3600
"""

# Digests of the three secrets: the values never reach the logs.
SECRETS_SCRIPT = r"""
d() { printf %s "$1" | sha256sum | cut -c1-64; }
echo "WHOLE=$(d "$WHOLE")"
echo "JSON_KEY=$(d "$JSON_KEY")"
echo "PARAM=$(d "$PARAM")"
echo DONE
exec sleep 3600
"""

WHOLE = "whole-s3cr3t-e2e-6f1d9a"
JSON_VALUE = "json-s3cr3t-e2e-2b7c44"
PARAM = "param-s3cr3t-e2e-91ad0e"


def task_def(family, script, task_role=None, exec_role=None, secrets=None):
    c = {"name": "app", "image": "httpd:2.4", "essential": True, "entryPoint": ["sh", "-c"],
         "command": [script], "stopTimeout": 2,  # sleep as init ignores SIGTERM
         "logConfiguration": awslogs(GROUP, "ecs")}
    if secrets:
        c["secrets"] = secrets
    doc = {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
           "cpu": "256", "memory": "512", "containerDefinitions": [c]}
    if task_role:
        doc["taskRoleArn"] = task_role
    if exec_role:
        doc["executionRoleArn"] = exec_role
    return doc


def create_role(srv, name, trust, policy=None):
    iam = srv.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if policy:
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    return arn


def lines_of(srv, arn, timeout=90):
    """The container's KEY=VALUE log lines once it printed DONE."""
    stream = f"ecs/app/{arn.rsplit('/', 1)[1]}"
    logs = srv.client("logs")
    deadline = time.time() + timeout
    msgs = []
    while time.time() < deadline:
        try:
            ev = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)["events"]
        except logs.exceptions.ResourceNotFoundException:
            ev = []
        msgs = [e["message"] for e in ev]
        if "DONE" in msgs:
            return dict(m.split("=", 1) for m in msgs if "=" in m)
        time.sleep(0.5)
    pytest.fail(f"the container did not finish: {msgs}\n{srv.log()[-3000:]}", pytrace=False)


def session_client(srv, service, creds):
    """A boto3 client signing with the task's temporary credentials."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service, endpoint_url=srv.endpoint, region_name=srv.region,
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["Token"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, proxies={}))


def error_code(fn):
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.response["Error"]["Code"]


def test_task_role_credentials(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    kms = srv.client("kms")
    allowed = kms.create_key(Description="task may encrypt")["KeyMetadata"]["Arn"]
    other = kms.create_key(Description="task may not")["KeyMetadata"]["Arn"]
    role = create_role(srv, "task-app", TRUST_ECS_TASKS, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": allowed}]})
    execution = create_role(srv, "task-exec", TRUST_ECS_TASKS, EXEC_POLICY)
    account = role.split(":")[4]

    register_doc(srv, tmp_path, task_def("creds", CREDS_SCRIPT, role, execution))
    arn = run_family(srv, "creds")
    wait_status(srv, arn, "RUNNING")
    task_id = arn.rsplit("/", 1)[1]
    out = lines_of(srv, arn)
    assert out["URI"].startswith("/v2/credentials/"), out
    creds = json.loads(out["CREDS"])
    assert set(creds) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}, creds
    assert creds["RoleArn"] == role
    assert creds["AccessKeyId"].startswith("ASIA")
    expires = datetime.datetime.strptime(creds["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    # Served with more than the SDKs' 15-minute refresh margin left.
    assert expires - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(minutes=15)

    # boto3 with the task's credentials is the assumed role, session = task id.
    me = session_client(srv, "sts", creds).get_caller_identity()
    assert me["Arn"] == f"arn:aws:sts::{account}:assumed-role/task-app/{task_id}", me
    assert me["Account"] == account
    task_kms = session_client(srv, "kms", creds)
    assert task_kms.encrypt(KeyId=allowed, Plaintext=b"from the task")["KeyId"] == allowed
    assert error_code(lambda: task_kms.encrypt(KeyId=other, Plaintext=b"x")) == "AccessDeniedException"
    task_ecs = session_client(srv, "ecs", creds)
    assert error_code(task_ecs.list_clusters) == "AccessDeniedException"
    # Nothing of the credentials in the task's description.
    described = json.dumps(srv.aws("ecs", "describe-tasks", "--tasks", arn))
    assert creds["SecretAccessKey"] not in described and creds["Token"] not in described

    # A second task (same role) gets its own credentials, not the first's.
    register_doc(srv, tmp_path, task_def("probe", PROBE_SCRIPT % {"other": out["URI"]}, role, execution))
    arn2 = run_family(srv, "probe")
    wait_status(srv, arn2, "RUNNING")
    out2 = lines_of(srv, arn2)
    own = json.loads(out2["OWN"])
    assert own["RoleArn"] == role and own["AccessKeyId"] != creds["AccessKeyId"]
    assert out2["OTHER"] == "", out2
    assert "400" in out2["OTHER_ERR"], out2
    me2 = session_client(srv, "sts", own).get_caller_identity()
    assert me2["Arn"].endswith(f"/task-app/{arn2.rsplit('/', 1)[1]}")

    # Once the task has stopped, its credentials are refused by every API.
    srv.aws("ecs", "stop-task", "--task", arn)
    wait_status(srv, arn, "STOPPED")
    assert error_code(session_client(srv, "sts", creds).get_caller_identity) in (
        "InvalidClientTokenId", "ExpiredToken", "UnrecognizedClientException", "AccessDenied")
    error_code(lambda: task_kms.encrypt(KeyId=allowed, Plaintext=b"x"))
    error_code(task_ecs.list_clusters)
    # The other task's still work.
    assert session_client(srv, "sts", own).get_caller_identity()["Arn"] == me2["Arn"]
    srv.aws("ecs", "stop-task", "--task", arn2)
    wait_status(srv, arn2, "STOPPED")
    error_code(session_client(srv, "sts", own).get_caller_identity)


def test_a_role_that_does_not_trust_ecs_tasks_fails_the_task(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    role = create_role(srv, "ec2-only", TRUST_EC2)
    execution = create_role(srv, "task-exec", TRUST_ECS_TASKS, EXEC_POLICY)
    register_doc(srv, tmp_path, task_def("untrusted", "echo never", role, execution))
    t, _ = wait_status(srv, run_family(srv, "untrusted"), "STOPPED")
    assert t["stopCode"] == "TaskFailedToStart", t
    assert t["stoppedReason"].startswith(
        f"ECS was unable to assume the role '{role}' that was provided for this task."), t["stoppedReason"]
    assert "startedAt" not in t


def data_dir_holds(srv, needles):
    """The needles found in plaintext in any file of the data directory
    (and of the PostgreSQL cluster, when the server uses one)
    (sparse files read by their allocated data; mount points, i.e. a
    running task's plaintext view, skipped) or in the server's log."""
    found = set()
    for n in needles:
        if n in srv.log():
            found.add(n)
    raw = [n.encode() for n in needles]
    for top in srv.state_dirs():
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(root, d))]
            for f in files:
                p = os.path.join(root, f)
                if os.path.islink(p) or not os.path.isfile(p) or os.path.ismount(p):
                    continue
                try:
                    for chunk in allocated_data(p):
                        found.update(n.decode() for n in raw if n in chunk)
                except OSError:
                    continue  # gone meanwhile
    return found


def test_secrets_reach_the_environment_and_nothing_else(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    sm, ssm = srv.client("secretsmanager"), srv.client("ssm")
    whole = sm.create_secret(Name="app/whole", SecretString=WHOLE)["ARN"]
    db = sm.create_secret(Name="app/db", SecretString=json.dumps({"username": "admin",
                                                                   "password": JSON_VALUE}))["ARN"]
    ssm.put_parameter(Name="/app/param", Value=PARAM, Type="SecureString")
    execution = create_role(srv, "task-exec", TRUST_ECS_TASKS, EXEC_POLICY)
    secrets = [
        {"name": "WHOLE", "valueFrom": whole},
        {"name": "JSON_KEY", "valueFrom": f"{db}:password::"},
        {"name": "PARAM", "valueFrom": "/app/param"},
    ]
    register_doc(srv, tmp_path, task_def("secrets", SECRETS_SCRIPT, exec_role=execution, secrets=secrets))
    td = srv.aws("ecs", "describe-task-definition", "--task-definition", "secrets")["taskDefinition"]
    assert td["containerDefinitions"][0]["secrets"] == secrets

    arn = run_family(srv, "secrets")
    wait_status(srv, arn, "RUNNING")
    out = lines_of(srv, arn)
    digest = lambda v: hashlib.sha256(v.encode()).hexdigest()  # noqa: E731
    assert out["WHOLE"] == digest(WHOLE), out
    assert out["JSON_KEY"] == digest(JSON_VALUE), out
    assert out["PARAM"] == digest(PARAM), out
    described = json.dumps(srv.aws("ecs", "describe-tasks", "--tasks", arn))
    needles = [WHOLE, JSON_VALUE, PARAM]
    assert not [n for n in needles if n in described]
    # While it runs: only the task's mounted plaintext view holds them.
    assert data_dir_holds(srv, needles) == set()

    # A missing secret fails the task with Fargate's reason, naming it.
    missing = whole.rsplit(":", 1)[0] + ":nope-AbCdEf"
    register_doc(srv, tmp_path, task_def("missing", "echo never", exec_role=execution,
                                         secrets=[{"name": "GONE", "valueFrom": missing}]))
    t, _ = wait_status(srv, run_family(srv, "missing"), "STOPPED")
    assert t["stopCode"] == "TaskFailedToStart", t
    assert t["stoppedReason"].startswith(
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
        "retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): "
        f"failed to fetch secret {missing} from secrets manager: ResourceNotFoundException: "), t["stoppedReason"]
    # ... and a missing parameter, SSM's way.
    register_doc(srv, tmp_path, task_def("missing-param", "echo never", exec_role=execution,
                                         secrets=[{"name": "GONE", "valueFrom": "/app/nope"}]))
    t, _ = wait_status(srv, run_family(srv, "missing-param"), "STOPPED")
    assert t["stoppedReason"] == (
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
        "retrieval failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): "
        "invalid ssm parameters: /app/nope"), t["stoppedReason"]

    srv.aws("ecs", "stop-task", "--task", arn)
    wait_status(srv, arn, "STOPPED")
    assert data_dir_holds(srv, needles) == set()
