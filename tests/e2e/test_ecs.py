"""End-to-end tests of the ECS control plane with the real AWS CLI.

Covers the source document's task definition registered verbatim, each
Fargate validation error, clusters (including `default`), describe/list,
tags, and persistence across a server restart. The RunTask -> RUNNING ->
STOPPED flow needs the task runtime: see pending_test_ecs_run.py.
"""

import copy
import json
import os
import re

import pytest

from conftest import AwsCliError  # noqa: F401  (re-exported for readers)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_TD = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "fargate-task-definition.json")
ACCOUNT_RE = r"\d{12}"


def source_doc():
    with open(SOURCE_TD) as f:
        return json.load(f)


def contains(got, want, path="$"):
    """Asserts every field of `want` is in `got` with the same value."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: expected an object, got {got!r}"
        for k, v in want.items():
            assert k in got, f"{path}.{k} missing from the echo"
            contains(got[k], v, f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            contains(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def register_doc(srv, doc, tmp_path, name="td.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")


def register_doc_error(srv, doc, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    return srv.aws_error("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")




# -- task definitions -----------------------------------------------------

def test_source_task_definition_registers_verbatim(ferry_server):
    srv = ferry_server
    doc = source_doc()
    out = srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    td = out["taskDefinition"]
    contains(td, doc)
    assert re.fullmatch(
        rf"arn:aws:ecs:us-east-1:{ACCOUNT_RE}:task-definition/fargate-task-definition:1",
        td["taskDefinitionArn"]), td["taskDefinitionArn"]
    assert td["revision"] == 1 and td["status"] == "ACTIVE"
    assert "FARGATE" in td["compatibilities"]
    assert isinstance(td["registeredAt"], str) or isinstance(td["registeredAt"], (int, float))

    described = srv.aws("ecs", "describe-task-definition",
                        "--task-definition", "fargate-task-definition:1")["taskDefinition"]
    contains(described, doc)
    # The container definition's fields come back as sent, defaults added.
    c = described["containerDefinitions"][0]
    assert c["command"] == doc["containerDefinitions"][0]["command"]
    assert c["logConfiguration"]["options"]["awslogs-stream-prefix"] == "ecs"


def test_unknown_fields_round_trip(ferry_server, tmp_path):
    doc = source_doc()
    doc["family"] = "roundtrip"
    doc["runtimePlatform"] = {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"}
    doc["containerDefinitions"][0]["ulimits"] = [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]
    doc["containerDefinitions"][0]["healthCheck"] = {"command": ["CMD-SHELL", "true"], "interval": 30}
    doc["containerDefinitions"][0]["dockerLabels"] = {"a": "b"}
    out = register_doc(ferry_server, doc, tmp_path)
    contains(out["taskDefinition"], doc)
    d = ferry_server.aws("ecs", "describe-task-definition", "--task-definition", "roundtrip")
    contains(d["taskDefinition"], doc)


def test_revisions_and_latest_active(ferry_server, tmp_path):
    srv = ferry_server
    doc = source_doc()
    doc["family"] = "revs"
    for i in range(1, 4):
        doc["memory"] = str(512 * (2 ** (i - 1)))  # 512, 1024, 2048: all valid with 256 CPU
        assert register_doc(srv, doc, tmp_path)["taskDefinition"]["revision"] == i
    latest = srv.aws("ecs", "describe-task-definition", "--task-definition", "revs")["taskDefinition"]
    assert latest["revision"] == 3 and latest["memory"] == "2048"
    srv.aws("ecs", "deregister-task-definition", "--task-definition", "revs:3")
    latest = srv.aws("ecs", "describe-task-definition", "--task-definition", "revs")["taskDefinition"]
    assert latest["revision"] == 2
    inactive = srv.aws("ecs", "describe-task-definition", "--task-definition", "revs:3")["taskDefinition"]
    assert inactive["status"] == "INACTIVE"
    arns = srv.aws("ecs", "list-task-definitions", "--family-prefix", "revs")["taskDefinitionArns"]
    assert [a.rsplit(":", 1)[1] for a in arns] == ["1", "2"]
    arns = srv.aws("ecs", "list-task-definitions", "--family-prefix", "revs", "--sort", "DESC")["taskDefinitionArns"]
    assert [a.rsplit(":", 1)[1] for a in arns] == ["2", "1"]
    fams = srv.aws("ecs", "list-task-definition-families", "--family-prefix", "rev")["families"]
    assert fams == ["revs"]
    # Revisions are never reused.
    assert register_doc(srv, doc, tmp_path)["taskDefinition"]["revision"] == 4
    # Paging through the CLI's paginator returns everything once.
    all_arns = srv.aws("ecs", "list-task-definitions", "--page-size", "1")["taskDefinitionArns"]
    assert len(all_arns) == len(set(all_arns)) == 3
    e = srv.aws_error("ecs", "describe-task-definition", "--task-definition", "revs:99")
    assert e.code == "ClientException" and e.message == "Unable to describe task definition."


def _mutate(path_value):
    def f(doc):
        obj = doc
        *path, last = path_value[0]
        for k in path:
            obj = obj[k]
        if path_value[1] is DELETE:
            del obj[last]
        else:
            obj[last] = path_value[1]
        return doc
    return f


DELETE = object()
C0 = ("containerDefinitions", 0)

VALIDATION_CASES = {
    "cpu_memory_pair": (_mutate((("memory",), "4096")),
                        "No Fargate configuration exists for given values: 256 CPU, 4096 memory"),
    "cpu_memory_pair_16vcpu": (lambda d: (d.update(cpu="16384", memory="36864"), d)[1],
                               "16384 CPU, 36864 memory"),
    "network_mode": (_mutate((("networkMode",), "bridge")), "awsvpc"),
    "no_task_cpu": (_mutate((("cpu",), DELETE)), "'cpu' be defined at the task level"),
    "ephemeral_too_small": (_mutate((("ephemeralStorage",), {"sizeInGiB": 20})), "between 21 and 200"),
    "ephemeral_too_big": (_mutate((("ephemeralStorage",), {"sizeInGiB": 201})), "between 21 and 200"),
    "duplicate_names": (lambda d: (d["containerDefinitions"].append(copy.deepcopy(d["containerDefinitions"][0])), d)[1],
                        "Duplicate container name 'sample-fargate-app'"),
    "no_essential": (_mutate(((*C0, "essential"), False)), "essential"),
    "host_port_mismatch": (_mutate(((*C0, "portMappings", 0, "hostPort"), 8080)),
                           "When networkMode=awsvpc, the host ports and container ports in port mappings must match."),
    # What Fargate refuses outright (hardening: accepted and ignored before).
    "privileged": (_mutate(((*C0, "privileged"), True)), "Privileged mode is not supported"),
    "cap_add": (_mutate(((*C0, "linuxParameters"), {"capabilities": {"add": ["SYS_ADMIN"]}})),
                "only supports adding the SYS_PTRACE"),
    "cap_drop_unknown": (_mutate(((*C0, "linuxParameters"), {"capabilities": {"drop": ["FLY"]}})),
                         "Invalid kernel capability 'FLY'"),
    "devices": (_mutate(((*C0, "linuxParameters"), {"devices": [{"hostPath": "/dev/kvm"}]})),
                "linuxParameters.devices is not supported"),
    "pid_mode_host": (_mutate((("pidMode",), "host")), "do not support pidMode 'host'"),
    "ipc_mode": (_mutate((("ipcMode",), "host")), "do not support ipcMode"),
    "negative_cpu": (_mutate(((*C0, "cpu"), -1)), "must be 0 or more"),
    "volume_name": (_mutate((("volumes",), [{"name": "bad name!"}])), "Volume name 'bad name!' is invalid"),
}


@pytest.mark.parametrize("case", sorted(VALIDATION_CASES))
def test_task_definition_validation(ferry_server_module, tmp_path, case):
    mutate, needle = VALIDATION_CASES[case]
    doc = mutate(source_doc())
    doc["family"] = f"bad-{case.replace('_', '-')}"
    e = register_doc_error(ferry_server_module, doc, tmp_path)
    assert e.code == "ClientException", e.stderr
    assert needle in e.message, e.message
    # Nothing was registered.
    e2 = ferry_server_module.aws_error("ecs", "describe-task-definition", "--task-definition", doc["family"])
    assert e2.code == "ClientException"


def test_valid_sizes_and_storage_register(ferry_server_module, tmp_path):
    for cpu, mem in [("512", "4096"), ("4096", "30720"), ("8192", "20480"), ("16384", "122880")]:
        doc = source_doc()
        doc.update(family=f"size-{cpu}-{mem}", cpu=cpu, memory=mem, ephemeralStorage={"sizeInGiB": 200})
        td = register_doc(ferry_server_module, doc, tmp_path)["taskDefinition"]
        assert (td["cpu"], td["memory"]) == (cpu, mem)
        assert td["ephemeralStorage"] == {"sizeInGiB": 200}


# -- run-task input validation (no runtime needed: all refused up front) --

RUN_CASES = {
    "count_11": (["--count", "11"], "InvalidParameterException", "count"),
    "count_0": (["--count", "0"], "InvalidParameterException", "count"),
    "unknown_cluster": (["--cluster", "no-such-cluster"], "ClusterNotFoundException", "Cluster not found."),
    "unknown_task_definition": (["--task-definition", "no-such-family:1"], "ClientException", "no-such-family"),
    "no_network_configuration": (None, "InvalidParameterException", "Network Configuration must be provided"),
    "unknown_platform_version": (["--platform-version", "1.2.0"], "PlatformUnknownException", "1.2.0"),
    "ephemeral_override": (["--overrides", json.dumps({"ephemeralStorage": {"sizeInGiB": 500}})],
                           "InvalidParameterException", "between 21 and 200"),
    "container_override_unknown": (["--overrides", json.dumps({"containerOverrides": [{"name": "ghost"}]})],
                                   "InvalidParameterException", "ghost"),
    "large_storage_on_1_3": (["--platform-version", "1.3.0", "--overrides",
                              json.dumps({"ephemeralStorage": {"sizeInGiB": 30}})],
                             "ClientException", "1.4.0"),
}


@pytest.fixture(scope="module")
def server_with_source_td(ferry_server_module):
    ferry_server_module.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    return ferry_server_module


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_task_validation(server_with_source_td, case):
    srv = server_with_source_td
    extra, code, needle = RUN_CASES[case]
    args = ["--task-definition", "fargate-task-definition", "--count", "1", "--launch-type", "FARGATE",
            "--platform-version", "1.4.0"]
    if extra is not None:
        args += ["--network-configuration", srv.netcfg] + extra
    e = srv.aws_error("ecs", "run-task", *args)
    assert e.code == code, e.stderr
    assert needle in e.message, e.message


# -- clusters ---------------------------------------------------------------

def test_default_cluster_and_cluster_lifecycle(ferry_server):
    srv = ferry_server
    arns = srv.aws("ecs", "list-clusters")["clusterArns"]
    assert len(arns) == 1 and re.fullmatch(rf"arn:aws:ecs:us-east-1:{ACCOUNT_RE}:cluster/default", arns[0])
    d = srv.aws("ecs", "describe-clusters")
    assert d["clusters"][0]["clusterName"] == "default" and d["clusters"][0]["status"] == "ACTIVE"

    c = srv.aws("ecs", "create-cluster", "--cluster-name", "prod",
                "--tags", "key=team,value=payments",
                "--settings", "name=containerInsights,value=enabled")["cluster"]
    assert c["status"] == "ACTIVE" and c["clusterName"] == "prod"
    assert c["tags"] == [{"key": "team", "value": "payments"}]
    d = srv.aws("ecs", "describe-clusters", "--clusters", "prod", c["clusterArn"], "missing")
    assert [x["clusterName"] for x in d["clusters"]] == ["prod", "prod"]
    assert "tags" not in d["clusters"][0] and "settings" not in d["clusters"][0]
    assert d["failures"][0]["reason"] == "MISSING"
    assert d["failures"][0]["arn"].endswith(":cluster/missing")
    d = srv.aws("ecs", "describe-clusters", "--clusters", "prod", "--include", "TAGS", "SETTINGS", "STATISTICS")
    cl = d["clusters"][0]
    assert cl["tags"] == [{"key": "team", "value": "payments"}]
    assert cl["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert any(s["name"] == "runningFargateTasksCount" for s in cl["statistics"])

    u = srv.aws("ecs", "update-cluster", "--cluster", "prod",
                "--settings", "name=containerInsights,value=disabled")["cluster"]
    assert u["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    assert len(srv.aws("ecs", "list-clusters")["clusterArns"]) == 2

    deleted = srv.aws("ecs", "delete-cluster", "--cluster", "prod")["cluster"]
    assert deleted["status"] == "INACTIVE"
    assert srv.aws("ecs", "describe-clusters", "--clusters", "prod")["clusters"][0]["status"] == "INACTIVE"
    assert len(srv.aws("ecs", "list-clusters")["clusterArns"]) == 1
    e = srv.aws_error("ecs", "update-cluster", "--cluster", "prod",
                      "--settings", "name=containerInsights,value=enabled")
    assert e.code == "ClusterNotFoundException"
    e = srv.aws_error("ecs", "create-cluster", "--cluster-name", "bad/name")
    assert e.code == "InvalidParameterException" and "bad/name" in e.message


def test_cluster_storage_key_must_be_a_key_not_an_alias(ferry_server):
    e = ferry_server.aws_error(
        "ecs", "create-cluster", "--cluster-name", "cmk",
        "--configuration", "managedStorageConfiguration={fargateEphemeralStorageKmsKeyId=alias/my-key}")
    assert e.code == "InvalidParameterException"
    assert "alias" in e.message
    e = ferry_server.aws_error(
        "ecs", "create-cluster", "--cluster-name", "cmk",
        "--configuration",
        "managedStorageConfiguration={fargateEphemeralStorageKmsKeyId=00000000-0000-0000-0000-000000000000}")
    assert e.code == "InvalidParameterException"
    assert "00000000-0000-0000-0000-000000000000" in e.message
    # Nothing was created.
    d = ferry_server.aws("ecs", "describe-clusters", "--clusters", "cmk")
    assert d["failures"][0]["reason"] == "MISSING"


# -- tags -------------------------------------------------------------------

def test_tags_on_clusters_and_task_definitions(ferry_server, tmp_path):
    srv = ferry_server
    cl = srv.aws("ecs", "create-cluster", "--cluster-name", "tagged")["cluster"]["clusterArn"]
    doc = source_doc()
    doc["family"] = "tagged"
    doc["tags"] = [{"key": "owner", "value": "ops"}]
    out = register_doc(srv, doc, tmp_path)
    assert out["tags"] == [{"key": "owner", "value": "ops"}]
    td = out["taskDefinition"]["taskDefinitionArn"]
    d = srv.aws("ecs", "describe-task-definition", "--task-definition", "tagged", "--include", "TAGS")
    assert d["tags"] == [{"key": "owner", "value": "ops"}]
    for arn in (cl, td):
        srv.aws("ecs", "tag-resource", "--resource-arn", arn, "--tags", "key=env,value=test", "key=tier,value=web")
        tags = srv.aws("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"]
        assert {"key": "env", "value": "test"} in tags and {"key": "tier", "value": "web"} in tags
        srv.aws("ecs", "untag-resource", "--resource-arn", arn, "--tag-keys", "env")
        tags = srv.aws("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"]
        assert {"key": "env", "value": "test"} not in tags and {"key": "tier", "value": "web"} in tags
    e = srv.aws_error("ecs", "tag-resource", "--resource-arn", cl, "--tags", "key=aws:reserved,value=x")
    assert e.code == "InvalidParameterException" and "aws:" in e.message
    e = srv.aws_error("ecs", "list-tags-for-resource", "--resource-arn", cl.replace("/tagged", "/ghost"))
    assert e.code == "ClusterNotFoundException"


# -- tasks that need no runtime to be recorded -------------------------------

def test_platform_1_3_task_is_recorded_unencrypted(ferry_server):
    """A 1.3.0 task needs no KMS key: it is recorded, describable, listable
    and stoppable whatever the runtime does with it."""
    srv = ferry_server
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    out = srv.aws("ecs", "run-task", "--cluster", "default",
                  "--task-definition", "fargate-task-definition:1", "--count", "1",
                  "--launch-type", "FARGATE", "--platform-version", "1.3.0",
                  "--network-configuration", srv.netcfg,
                  "--overrides", json.dumps({"containerOverrides": [
                      {"name": "sample-fargate-app", "environment": [{"name": "A", "value": "1"}]}]}))
    assert out["failures"] == []
    t = out["tasks"][0]
    m = re.fullmatch(rf"arn:aws:ecs:us-east-1:{ACCOUNT_RE}:task/default/([0-9a-f]{{32}})", t["taskArn"])
    assert m, t["taskArn"]
    assert t["platformVersion"] == "1.3.0"
    assert t["launchType"] == "FARGATE"
    assert t["ephemeralStorage"] == {"sizeInGiB": 20}
    assert t["fargateEphemeralStorage"] == {"sizeInGiB": 20}
    assert t["taskDefinitionArn"].endswith(":task-definition/fargate-task-definition:1")
    assert t["overrides"]["containerOverrides"][0]["environment"] == [{"name": "A", "value": "1"}]
    assert t["attachments"][0]["type"] == "ElasticNetworkInterface"
    assert {"name": "subnetId", "value": srv.default_network()[0]} in t["attachments"][0]["details"]
    statuses = {"PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING",
                "DEPROVISIONING", "STOPPED"}
    assert t["lastStatus"] in statuses
    task_id = m.group(1)
    # Describe by id and by ARN.
    d = srv.aws("ecs", "describe-tasks", "--tasks", task_id, t["taskArn"], "0" * 32)
    assert [x["taskArn"] for x in d["tasks"]] == [t["taskArn"]] * 2
    assert d["failures"][0]["reason"] == "MISSING"
    s = srv.aws("ecs", "stop-task", "--task", t["taskArn"], "--reason", "e2e says stop")["task"]
    assert s["desiredStatus"] == "STOPPED"
    d = srv.aws("ecs", "describe-tasks", "--tasks", t["taskArn"])["tasks"][0]
    assert d["desiredStatus"] == "STOPPED" and d["stopCode"] in ("UserInitiated", "TaskFailedToStart")
    assert t["taskArn"] in srv.aws("ecs", "list-tasks", "--desired-status", "STOPPED")["taskArns"]
    assert t["taskArn"] not in srv.aws("ecs", "list-tasks")["taskArns"]
    e = srv.aws_error("ecs", "stop-task", "--task", "f" * 32)
    assert e.code == "InvalidParameterException"


# -- restart ------------------------------------------------------------------

def test_state_survives_restart(ferry_server, tmp_path):
    srv = ferry_server
    srv.aws("ecs", "create-cluster", "--cluster-name", "durable", "--tags", "key=k,value=v")
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    srv.aws("ecs", "deregister-task-definition", "--task-definition", "fargate-task-definition:2")
    t = srv.aws("ecs", "run-task", "--cluster", "durable", "--task-definition", "fargate-task-definition:1",
                "--launch-type", "FARGATE", "--platform-version", "1.3.0",
                "--network-configuration", srv.netcfg)["tasks"][0]
    before = srv.aws("ecs", "describe-task-definition", "--task-definition", "fargate-task-definition:1")

    assert srv.restart() == 0

    clusters = srv.aws("ecs", "describe-clusters", "--clusters", "durable", "default", "--include", "TAGS")
    assert [c["status"] for c in clusters["clusters"]] == ["ACTIVE", "ACTIVE"]
    assert clusters["clusters"][0]["tags"] == [{"key": "k", "value": "v"}]
    after = srv.aws("ecs", "describe-task-definition", "--task-definition", "fargate-task-definition:1")
    assert after == before
    assert srv.aws("ecs", "describe-task-definition",
                   "--task-definition", "fargate-task-definition:2")["taskDefinition"]["status"] == "INACTIVE"
    assert srv.aws("ecs", "describe-task-definition",
                   "--task-definition", "fargate-task-definition")["taskDefinition"]["revision"] == 1
    out = srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    assert out["taskDefinition"]["revision"] == 3
    d = srv.aws("ecs", "describe-tasks", "--cluster", "durable", "--tasks", t["taskArn"])
    assert d["failures"] == [] and d["tasks"][0]["taskArn"] == t["taskArn"]
    assert d["tasks"][0]["createdAt"] == t["createdAt"]
    # Whatever the runtime did, a task from before the restart is not left
    # half-way: reconciliation re-adopted it or recorded it STOPPED.
    assert d["tasks"][0]["lastStatus"] in ("RUNNING", "STOPPED", "PENDING", "ACTIVATING", "PROVISIONING")


# -- customer-managed keys for ephemeral storage ------------------------------

def fargate_key_policy(account):
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "fargate", "Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
             "Action": ["kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant",
                        "kms:RetireGrant"],
             "Resource": "*"},
        ],
    })


def test_cluster_cmk_is_checked_and_used_for_new_tasks(ferry_server):
    srv = ferry_server
    default_arn = srv.aws("ecs", "describe-clusters")["clusters"][0]["clusterArn"]
    account = default_arn.split(":")[4]
    key = srv.aws("kms", "create-key", "--policy", fargate_key_policy(account))["KeyMetadata"]
    cfg = f"managedStorageConfiguration={{fargateEphemeralStorageKmsKeyId={key['KeyId']}}}"
    c = srv.aws("ecs", "create-cluster", "--cluster-name", "cmk", "--configuration", cfg)["cluster"]
    assert c["configuration"]["managedStorageConfiguration"]["fargateEphemeralStorageKmsKeyId"] == key["KeyId"]
    d = srv.aws("ecs", "describe-clusters", "--clusters", "cmk", "--include", "CONFIGURATIONS")
    assert d["clusters"][0]["configuration"] == c["configuration"]

    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    run = ["--task-definition", "fargate-task-definition", "--launch-type", "FARGATE",
           "--platform-version", "1.4.0", "--network-configuration", srv.netcfg]
    t = srv.aws("ecs", "run-task", "--cluster", "cmk", *run)["tasks"][0]
    assert t["platformVersion"] == "1.4.0"
    assert t["fargateEphemeralStorage"] == {"sizeInGiB": 20, "kmsKeyId": key["Arn"]}
    # The default cluster has no CMK: the platform key protects its tasks and
    # DescribeTasks names no key.
    t = srv.aws("ecs", "run-task", "--cluster", "default", *run)["tasks"][0]
    assert t["fargateEphemeralStorage"] == {"sizeInGiB": 20}

    # A disabled key is refused, naming its state.
    srv.aws("kms", "disable-key", "--key-id", key["KeyId"])
    e = srv.aws_error("ecs", "update-cluster", "--cluster", "default", "--configuration", cfg)
    assert e.code == "InvalidParameterException" and "Disabled" in e.message, e.message
    # A key whose policy does not let Fargate use it is refused with the KMS reason.
    plain = srv.aws("kms", "create-key")["KeyMetadata"]
    e = srv.aws_error("ecs", "create-cluster", "--cluster-name", "plain", "--configuration",
                      f"managedStorageConfiguration={{fargateEphemeralStorageKmsKeyId={plain['Arn']}}}")
    assert e.code == "InvalidParameterException" and "AccessDenied" in e.message, e.message
    # ferry's KMS only makes symmetric keys, so no asymmetric key can reach
    # a cluster (the NotSymmetric check is unit-tested in crates/control).
