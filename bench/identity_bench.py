"""Driver for bench/identity.sh: what task identity costs at start-up.

One server; tasks one at a time, two task definitions alternating:
`plain` (one container, as bench/task.sh) and `identity` (the same
container with a task role, an execution role and three secrets: a whole
Secrets Manager secret, a JSON key of another, a SecureString parameter).
RunTask to DescribeTasks RUNNING (polled every 5 ms): the secrets are
resolved as the execution role and the task role's session is issued
before the container starts, so both are inside the measured time.
Reported: p50/p99 per definition and the ratio of the p50s.
"""
import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from conftest import FerryServer, import_httpd  # noqa: E402
from task_bench import START_TD, alternating_starts, pct  # noqa: E402

TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
READ_SECRETS = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameters", "ssm:GetParameter",
                                   "kms:Decrypt"], "Resource": "*"}]}


def setup_identity(srv):
    iam, sm, ssm = srv.client("iam"), srv.client("secretsmanager"), srv.client("ssm")
    arns = {}
    for name in ("bench-exec", "bench-task"):
        r = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
        arns[name] = r["Role"]["Arn"]
    iam.put_role_policy(RoleName="bench-exec", PolicyName="read", PolicyDocument=json.dumps(READ_SECRETS))
    whole = sm.create_secret(Name="bench/whole", SecretString="s3cr3t-whole")["ARN"]
    js = sm.create_secret(Name="bench/json", SecretString=json.dumps({"password": "s3cr3t-json"}))["ARN"]
    ssm.put_parameter(Name="/bench/param", Value="s3cr3t-param", Type="SecureString")
    td = json.loads(json.dumps(START_TD))
    td["family"] = "bench-identity"
    td["taskRoleArn"] = arns["bench-task"]
    td["executionRoleArn"] = arns["bench-exec"]
    td["containerDefinitions"][0]["secrets"] = [
        {"name": "WHOLE", "valueFrom": whole},
        {"name": "JSON_KEY", "valueFrom": f"{js}:password::"},
        {"name": "PARAM", "valueFrom": "/bench/param"},
    ]
    return td


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20, help="tasks per definition")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ferry-bench-identity-", dir="/var/tmp")
    srv = FerryServer(os.path.join(root, "data"))
    fam = {"plain": START_TD["family"], "identity": "bench-identity"}
    try:
        srv.start()
        import_httpd(srv, pathlib.Path(root))
        ecs = srv.client("ecs")
        ecs.register_task_definition(**START_TD)
        ecs.register_task_definition(**setup_identity(srv))
        print(f"host: {os.cpu_count()} cores, {os.uname().release}, load average before: "
              f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
        lat = alternating_starts(ecs, fam, a.tasks)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nRunTask to RUNNING, {a.tasks} tasks each, one at a time, alternating (1.4.0, 20 GiB volume):")
    print("| task definition | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for kind, what in [("plain", "one container"),
                       ("identity", "one container + task role + execution role + 3 secrets")]:
        print(f"| {what} | {pct(lat[kind], 0.5) * 1000:.0f} | {pct(lat[kind], 0.99) * 1000:.0f} |")
    print(f"ratio of p50, identity / plain: {pct(lat['identity'], 0.5) / pct(lat['plain'], 0.5):.2f}")


if __name__ == "__main__":
    main()
