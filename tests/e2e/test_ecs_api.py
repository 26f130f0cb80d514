"""ECS breadth with the real AWS CLI and boto3: capacity providers on a
cluster, RunTask strategies (base then weight) over several tasks, a spot
interruption of a running task (SIGTERM seen by the container, stopCode
SpotInterruption, a service replaces it), task definition families and
deletion, account settings with a principal override, Fargate's refusals
in ECS's words, and a CreateCluster round trip of every member.
"""

import json
import os
import subprocess
import time

import pytest

from conftest import ferry_bin, import_httpd, wait_status

SPOT = {"capacityProvider": "FARGATE_SPOT"}


def base_doc(family, **extra):
    doc = {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
           "cpu": "256", "memory": "512",
           "containerDefinitions": [{"name": "app", "image": "httpd:2.4",
                                     "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]}]}
    doc.update(extra)
    return doc


def register(srv, tmp_path, doc):
    p = tmp_path / f"{doc['family']}.json"
    p.write_text(json.dumps(doc))
    return srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")["taskDefinition"]


def test_create_cluster_round_trips_every_member(ferry_server_module):
    srv = ferry_server_module
    ecs = srv.client("ecs")
    req = {"clusterName": "everything", "tags": [{"key": "team", "value": "pay"}],
           "settings": [{"name": "containerInsights", "value": "enhanced"}],
           "configuration": {"executeCommandConfiguration": {"logging": "DEFAULT"}},
           "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
           "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "base": 1, "weight": 1},
                                               {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 4}],
           "serviceConnectDefaults": {"namespace": "pay.local"}}
    created = ecs.create_cluster(**req)["cluster"]
    described = ecs.describe_clusters(clusters=["everything"],
                                      include=["TAGS", "SETTINGS", "CONFIGURATIONS"])["clusters"][0]
    for c in (created, described):
        for k in ("tags", "settings", "configuration", "capacityProviders", "defaultCapacityProviderStrategy",
                  "serviceConnectDefaults"):
            assert c[k] == req[k], (k, c[k])
    # Without include, the optional parts stay out but providers are shown.
    plain = ecs.describe_clusters(clusters=["everything"])["clusters"][0]
    assert "tags" not in plain and plain["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]


def test_capacity_providers_on_a_cluster(ferry_server_module):
    srv = ferry_server_module
    d = srv.aws("ecs", "describe-capacity-providers")
    assert [p["name"] for p in d["capacityProviders"]] == ["FARGATE", "FARGATE_SPOT"]
    assert all(p["status"] == "ACTIVE" for p in d["capacityProviders"])
    d = srv.aws("ecs", "describe-capacity-providers", "--capacity-providers", "FARGATE_SPOT", "ASG1")
    assert d["capacityProviders"][0]["capacityProviderArn"].endswith(":capacity-provider/FARGATE_SPOT")
    assert d["failures"][0]["reason"] == "MISSING"
    srv.aws("ecs", "create-cluster", "--cluster-name", "cp")
    c = srv.aws("ecs", "put-cluster-capacity-providers", "--cluster", "cp",
                "--capacity-providers", "FARGATE", "FARGATE_SPOT",
                "--default-capacity-provider-strategy",
                "capacityProvider=FARGATE_SPOT,weight=3", "capacityProvider=FARGATE,weight=1,base=1")["cluster"]
    assert c["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert c["defaultCapacityProviderStrategy"][1] == {"capacityProvider": "FARGATE", "weight": 1, "base": 1}
    cases = [
        (["capacityProvider=FARGATE,weight=1001"], "between 0 and 1000"),
        (["capacityProvider=FARGATE,weight=1,base=100001"], "between 0 and 100000"),
        (["capacityProvider=FARGATE,weight=1,base=1", "capacityProvider=FARGATE_SPOT,weight=1,base=2"],
         "more than one capacity provider with a base"),
    ]
    for strategy, needle in cases:
        e = srv.aws_error("ecs", "put-cluster-capacity-providers", "--cluster", "cp",
                          "--capacity-providers", "FARGATE", "FARGATE_SPOT",
                          "--default-capacity-provider-strategy", *strategy)
        assert e.code == "InvalidParameterException" and needle in e.message, e.message
    e = srv.aws_error("ecs", "put-cluster-capacity-providers", "--cluster", "cp",
                      "--capacity-providers", "FARGATE",
                      "--default-capacity-provider-strategy", "capacityProvider=FARGATE_SPOT,weight=1")
    assert "not associated with the cluster" in e.message, e.message
    e = srv.aws_error("ecs", "create-capacity-provider", "--name", "asg",
                      "--auto-scaling-group-provider", "autoScalingGroupArn=arn:aws:autoscaling:x")
    assert e.code == "ClientException" and "Fargate only" in e.message, e.message


def test_run_task_strategy_distributes_by_base_then_weight(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    register(srv, tmp_path, base_doc("spread"))
    srv.aws("ecs", "create-cluster", "--cluster-name", "mix", "--capacity-providers", "FARGATE", "FARGATE_SPOT")
    out = srv.aws("ecs", "run-task", "--cluster", "mix", "--task-definition", "spread", "--count", "6",
                  "--capacity-provider-strategy", "capacityProvider=FARGATE,base=2,weight=1",
                  "capacityProvider=FARGATE_SPOT,weight=3",
                  "--network-configuration", srv.netcfg)
    arns = [t["taskArn"] for t in out["tasks"]]
    assert len(arns) == 6, out
    tasks = srv.aws("ecs", "describe-tasks", "--cluster", "mix", "--tasks", *arns)["tasks"]
    names = sorted(t["capacityProviderName"] for t in tasks)
    # 2 for the base, then 4 split 1:3.
    assert names == ["FARGATE"] * 3 + ["FARGATE_SPOT"] * 3, names
    assert {t["launchType"] for t in tasks} == {"FARGATE"}
    e = srv.aws_error("ecs", "run-task", "--cluster", "mix", "--task-definition", "spread",
                      "--launch-type", "FARGATE", "--capacity-provider-strategy", "capacityProvider=FARGATE,weight=1",
                      "--network-configuration", srv.netcfg)
    assert e.code == "InvalidParameterException"
    assert "Specifying both a launch type and capacity provider strategy is not supported" in e.message
    for arn in arns:
        srv.aws("ecs", "stop-task", "--cluster", "mix", "--task", arn)
    for arn in arns:
        wait_status(srv, arn, "STOPPED", cluster="mix")


def interrupt(srv, *args):
    return subprocess.run([ferry_bin(), "spot", "interrupt", "--endpoint", srv.endpoint,
                           "--credentials", srv.credentials_file, *args],
                          capture_output=True, text=True, timeout=60)


def test_spot_interruption_warns_with_sigterm_and_the_service_replaces(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    logs = {"logDriver": "awslogs", "options": {"awslogs-group": "/e2e/spot", "awslogs-region": "us-east-1",
                                                "awslogs-stream-prefix": "s", "awslogs-create-group": "true"}}
    doc = base_doc("spotty")
    doc["containerDefinitions"][0].update(
        stopTimeout=10, logConfiguration=logs,
        command=["trap 'echo got-sigterm; sleep 1; exit 0' TERM; echo up; while true; do sleep 0.1; done"])
    register(srv, tmp_path, doc)
    srv.aws("ecs", "put-cluster-capacity-providers", "--cluster", "default",
            "--capacity-providers", "FARGATE", "FARGATE_SPOT", "--default-capacity-provider-strategy", "[]")
    srv.aws("ecs", "create-service", "--service-name", "spotsvc", "--task-definition", "spotty",
            "--desired-count", "1", "--capacity-provider-strategy", "capacityProvider=FARGATE_SPOT,weight=1",
            "--network-configuration", srv.netcfg)

    def service_tasks():
        return srv.aws("ecs", "list-tasks", "--service-name", "spotsvc")["taskArns"]
    deadline = time.time() + 60
    while not service_tasks() and time.time() < deadline:
        time.sleep(0.25)
    first = service_tasks()[0]
    t, _ = wait_status(srv, first, "RUNNING")
    assert t["capacityProviderName"] == "FARGATE_SPOT"
    # An on-demand task cannot be interrupted.
    od = srv.aws("ecs", "run-task", "--task-definition", "spotty", "--launch-type", "FARGATE",
                 "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]
    p = interrupt(srv, od)
    assert p.returncode != 0 and "NOT_FARGATE_SPOT" in p.stdout, (p.stdout, p.stderr)
    p = interrupt(srv, first)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["interrupted"] == [first]
    t, _ = wait_status(srv, first, "STOPPED")
    assert t["stopCode"] == "SpotInterruption"
    assert t["stoppedReason"] == "Your Spot Task was interrupted."
    assert t["containers"][0]["exitCode"] == 0, t["containers"]
    tid = first.rsplit("/", 1)[1]
    msgs = [e["message"] for e in srv.aws("logs", "get-log-events", "--log-group-name", "/e2e/spot",
                                           "--log-stream-name", f"s/app/{tid}", "--start-from-head")["events"]]
    assert "got-sigterm" in msgs, msgs
    # The service replaces it, on FARGATE_SPOT again.
    deadline = time.time() + 60
    replacement = None
    while time.time() < deadline and not replacement:
        replacement = next((a for a in service_tasks() if a != first), None)
        time.sleep(0.25)
    assert replacement, "the service did not replace its interrupted task"
    t, _ = wait_status(srv, replacement, "RUNNING")
    assert t["capacityProviderName"] == "FARGATE_SPOT"
    srv.aws("ecs", "delete-service", "--service", "spotsvc", "--force")
    srv.aws("ecs", "stop-task", "--task", od)
    wait_status(srv, od, "STOPPED")
    wait_status(srv, replacement, "STOPPED")


def test_spot_interrupt_is_for_the_administrator_only(ferry_server_module):
    srv = ferry_server_module
    iam = srv.client("iam")
    iam.create_user(UserName="spotter")
    iam.put_user_policy(UserName="spotter", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    k = iam.create_access_key(UserName="spotter")["AccessKey"]
    creds = os.path.join(os.path.dirname(srv.credentials_file), "spotter-credentials")
    with open(creds, "w") as f:
        f.write(f"[default]\naws_access_key_id = {k['AccessKeyId']}\n"
                f"aws_secret_access_key = {k['SecretAccessKey']}\n")
    p = subprocess.run([ferry_bin(), "spot", "interrupt", "--endpoint", srv.endpoint, "--credentials", creds,
                        "--all"], capture_output=True, text=True, timeout=60)
    os.unlink(creds)
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr, (p.stdout, p.stderr)


def test_task_definition_families_and_deletion(ferry_server_module, tmp_path):
    srv = ferry_server_module
    for fam in ("fam-a", "fam-b", "fam-c", "other"):
        register(srv, tmp_path, base_doc(fam))
    register(srv, tmp_path, base_doc("fam-a"))
    ecs = srv.client("ecs")
    page = ecs.list_task_definition_families(familyPrefix="fam-", maxResults=2)
    assert page["families"] == ["fam-a", "fam-b"]
    rest = ecs.list_task_definition_families(familyPrefix="fam-", nextToken=page["nextToken"])
    assert rest["families"] == ["fam-c"] and "nextToken" not in rest
    srv.aws("ecs", "deregister-task-definition", "--task-definition", "fam-c:1")
    assert "fam-c" in ecs.list_task_definition_families(status="INACTIVE")["families"]
    assert "fam-c" not in ecs.list_task_definition_families(status="ACTIVE")["families"]
    assert "fam-c" in ecs.list_task_definition_families(status="ALL")["families"]
    # Only INACTIVE revisions can be deleted.
    r = srv.aws("ecs", "delete-task-definitions", "--task-definitions", "fam-a:1", "fam-c:1")
    assert [t["taskDefinitionArn"].rsplit("/", 1)[1] for t in r["taskDefinitions"]] == ["fam-c:1"]
    assert r["taskDefinitions"][0]["status"] == "DELETE_IN_PROGRESS"
    assert "still in ACTIVE status" in r["failures"][0]["reason"], r
    e = srv.aws_error("ecs", "describe-task-definition", "--task-definition", "fam-c:1")
    assert e.code == "ClientException"
    # fam-a:2 is untouched.
    assert srv.aws("ecs", "describe-task-definition", "--task-definition", "fam-a:2")["taskDefinition"]["status"] == "ACTIVE"


def test_account_settings_with_a_principal_override(ferry_server_module):
    srv = ferry_server_module
    ecs = srv.client("ecs")
    acct = srv.client("sts").get_caller_identity()["Account"]
    root = f"arn:aws:iam::{acct}:root"
    user = f"arn:aws:iam::{acct}:user/settings-user"
    eff = ecs.list_account_settings(name="fargateTaskRetirementWaitPeriod", effectiveSettings=True)["settings"]
    assert eff == [{"name": "fargateTaskRetirementWaitPeriod", "value": "7", "principalArn": root,
                    "type": "aws_managed"}]
    d = srv.aws("ecs", "put-account-setting-default", "--name", "containerInsights", "--value", "enabled")
    assert d["setting"]["principalArn"] == root
    srv.aws("ecs", "put-account-setting", "--name", "containerInsights", "--value", "disabled",
            "--principal-arn", user)
    mine = ecs.list_account_settings(name="containerInsights", principalArn=user, effectiveSettings=True)
    assert mine["settings"][0]["value"] == "disabled" and mine["settings"][0]["principalArn"] == user
    account = ecs.list_account_settings(name="containerInsights", effectiveSettings=True)["settings"][0]
    assert account["value"] == "enabled" and account["principalArn"] == root
    srv.aws("ecs", "delete-account-setting", "--name", "containerInsights", "--principal-arn", user)
    mine = ecs.list_account_settings(name="containerInsights", principalArn=user, effectiveSettings=True)
    assert mine["settings"][0]["value"] == "enabled"
    # A cluster made without settings takes the account's containerInsights.
    c = ecs.create_cluster(clusterName="insightful")["cluster"]
    assert c["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    e = srv.aws_error("ecs", "put-account-setting", "--name", "taskLongArnFormat", "--value", "sometimes")
    assert e.code == "InvalidParameterException" and "Valid values: enabled, disabled" in e.message
    e = srv.aws_error("ecs", "put-account-setting", "--name", "fargateFIPSMode", "--value", "enabled",
                      "--principal-arn", user)
    assert "PutAccountSettingDefault" in e.message
    srv.aws("ecs", "delete-account-setting", "--name", "containerInsights", "--principal-arn", root)


REFUSALS = {
    "network_mode_bridge": (("networkMode", "bridge"), "Fargate only supports network mode \u2018awsvpc\u2019."),
    "network_mode_absent": (("networkMode", None), "Fargate only supports network mode \u2018awsvpc\u2019."),
    "pid_mode_host": (("pidMode", "host"),
                      "Tasks using the Fargate launch type do not support pidMode 'host'. "
                      "The supported value for pidMode is 'task'."),
    "ipc_mode": (("ipcMode", "none"), "Tasks using the Fargate launch type do not support ipcMode."),
    "privileged": (("privileged", True), "Privileged mode is not supported for tasks using the Fargate launch type"),
    "host_source_path": (("volumes", [{"name": "h", "host": {"sourcePath": "/etc"}}]),
                         "host.sourcePath is not supported on Fargate"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_fargate_refusals(ferry_server_module, tmp_path, case):
    (key, value), message = REFUSALS[case]
    doc = base_doc(f"refused-{case.replace('_', '-')}")
    if key == "privileged":
        doc["containerDefinitions"][0]["privileged"] = value
    elif value is None:
        del doc[key]
    else:
        doc[key] = value
    p = tmp_path / "doc.json"
    p.write_text(json.dumps(doc))
    e = ferry_server_module.aws_error("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    assert e.code == "ClientException"
    assert message in e.message, e.message


def test_members_ferry_cannot_honour_are_refused(ferry_server_module, tmp_path):
    srv = ferry_server_module
    register(srv, tmp_path, base_doc("placed"))
    e = srv.aws_error("ecs", "run-task", "--task-definition", "placed", "--launch-type", "FARGATE",
                      "--placement-strategy", "type=spread,field=attribute:ecs.availability-zone",
                      "--network-configuration", srv.netcfg)
    assert e.code == "InvalidParameterException" and "'placementStrategy' is not supported" in e.message
    e = srv.aws_error("ecs", "create-service", "--service-name", "lb", "--task-definition", "placed",
                      "--desired-count", "0", "--network-configuration", srv.netcfg,
                      "--load-balancers", "targetGroupArn=arn:aws:elasticloadbalancing:x,containerName=app,containerPort=80")
    assert e.code == "InvalidParameterException" and "'loadBalancers' is not supported" in e.message
