"""ECS services end to end with the real AWS CLI: the source document's
scenarios (force new deployment on 1.4.0; 1.3.0 -> 1.4.0; restarting a
service's tasks), rolling replacement within minimumHealthyPercent, and the
cluster CMK checks (key policy DryRun at CreateCluster, disabled key makes
new tasks fail to start, re-enabling recovers)."""

import json
import os
import subprocess
import time

import pytest

from conftest import import_httpd

TD = {
    "family": "svc-tiny",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [{
        "name": "app", "image": "httpd:2.4", "essential": True, "stopTimeout": 2,
        "entryPoint": ["sh", "-c"], "command": ["sleep 3600"],
    }],
}


@pytest.fixture(scope="module")
def srv(ferry_server_module, tmp_path_factory):
    s = ferry_server_module
    import_httpd(s, tmp_path_factory.mktemp("img"))
    p = tmp_path_factory.mktemp("td") / "td.json"
    p.write_text(json.dumps(TD))
    s.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    return s


def describe(srv, name, cluster="default"):
    return srv.aws("ecs", "describe-services", "--cluster", cluster, "--services", name)["services"][0]


def tasks_of(srv, name, cluster="default", status="RUNNING"):
    arns = srv.aws("ecs", "list-tasks", "--cluster", cluster, "--service-name", name,
                   "--desired-status", status)["taskArns"]
    if not arns:
        return []
    return srv.aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", *arns)["tasks"]


def wait_steady(srv, name, cluster="default", timeout=90, sample=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = describe(srv, name, cluster)
        if sample is not None:
            sample.append(s["runningCount"])
        d = s["deployments"]
        if (len(d) == 1 and d[0]["rolloutState"] == "COMPLETED" and s["runningCount"] == s["desiredCount"]
                and s["pendingCount"] == 0 and "steady state" in s["events"][0]["message"]):
            return s
        time.sleep(0.3)
    pytest.fail(f"service {name} did not reach a steady state: {json.dumps(describe(srv, name, cluster))[:3000]}")


def volume_of(srv, task):
    d = os.path.join(srv.data_dir, "tasks", task["taskArn"].rsplit("/", 1)[1])
    return os.path.join(d, "volume.luks"), os.path.join(d, "volume.img")


def luks_token(path):
    out = subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata", path],
                         capture_output=True, text=True, check=True).stdout
    tokens = json.loads(out)["tokens"]
    return tokens["0"]


def cleanup(srv, name, cluster="default"):
    srv.aws("ecs", "delete-service", "--cluster", cluster, "--service", name, "--force", check=False)
    deadline = time.time() + 60
    while time.time() < deadline and describe(srv, name, cluster)["status"] != "INACTIVE":
        time.sleep(0.3)


def test_force_new_deployment_replaces_every_task_within_min_healthy(srv):
    """Scenario 1 and the rolling replacement: 5 tasks on 1.4.0, force new
    deployment, never fewer than 100% running, all replaced, encrypted."""
    name = "web5"
    s = srv.aws("ecs", "create-service", "--service-name", name, "--task-definition", "svc-tiny",
                "--desired-count", "5", "--launch-type", "FARGATE", "--platform-version", "1.4.0",
                "--network-configuration", srv.netcfg)["service"]
    try:
        assert s["deploymentConfiguration"]["minimumHealthyPercent"] == 100
        assert s["deploymentConfiguration"]["maximumPercent"] == 200
        wait_steady(srv, name)
        before = {t["taskArn"] for t in tasks_of(srv, name)}
        assert len(before) == 5
        s = srv.aws("ecs", "update-service", "--service", name, "--force-new-deployment")["service"]
        assert [d["status"] for d in s["deployments"]] == ["PRIMARY", "ACTIVE"]
        samples = []
        s = wait_steady(srv, name, timeout=120, sample=samples)
        assert min(samples) >= 5, f"running dropped below minimumHealthyPercent: {samples}"
        after = tasks_of(srv, name)
        assert len(after) == 5 and not before & {t["taskArn"] for t in after}
        for t in after:
            assert t["platformVersion"] == "1.4.0"
            assert t["group"] == f"service:{name}"
            assert t["startedBy"] == s["deployments"][0]["id"]
            luks, _ = volume_of(srv, t)
            assert luks_token(luks)["type"] == "ferry-kms"
        stopped = srv.aws("ecs", "describe-tasks", "--tasks", *before)["tasks"]
        assert all(t["stopCode"] == "ServiceSchedulerInitiated" for t in stopped)
        msgs = [e["message"] for e in s["events"]]
        assert any(m.startswith(f"(service {name}) has started 5 tasks: (task ") for m in msgs)
    finally:
        cleanup(srv, name)


def test_platform_13_to_14_gets_encrypted_storage(srv):
    """Scenario 2: a service on 1.3.0 (plain volume.img) updated to 1.4.0
    with force new deployment ends on LUKS2 volumes."""
    name = "legacy"
    srv.aws("ecs", "create-service", "--service-name", name, "--task-definition", "svc-tiny",
            "--desired-count", "2", "--platform-version", "1.3.0", "--network-configuration", srv.netcfg)
    try:
        wait_steady(srv, name)
        for t in tasks_of(srv, name):
            assert t["platformVersion"] == "1.3.0"
            luks, img = volume_of(srv, t)
            assert os.path.exists(img) and not os.path.exists(luks)
            assert subprocess.run(["cryptsetup", "isLuks", img]).returncode != 0
        srv.aws("ecs", "update-service", "--service", name, "--platform-version", "1.4.0",
                "--force-new-deployment")
        s = wait_steady(srv, name, timeout=120)
        assert s["deployments"][0]["platformVersion"] == "1.4.0"
        for t in tasks_of(srv, name):
            assert t["platformVersion"] == "1.4.0"
            luks, img = volume_of(srv, t)
            assert not os.path.exists(img)
            assert subprocess.run(["cryptsetup", "isLuks", luks]).returncode == 0
    finally:
        cleanup(srv, name)


def test_cmk_policy_lifecycle_and_restart(srv):
    """CMK: a key policy that does not let Fargate use the key fails
    CreateCluster with the KMS reason (DryRun as fargate.amazonaws.com);
    with the policy, tasks run under the CMK (token, audit); stopping a
    service's tasks gets replacements (scenario 3); disabling the key keeps
    running tasks and makes new ones fail to start; re-enabling recovers."""
    key = srv.aws("kms", "create-key")["KeyMetadata"]["Arn"]
    cfg = json.dumps({"managedStorageConfiguration": {"fargateEphemeralStorageKmsKeyId": key}})
    # The default key policy (account only): Fargate may not even see it.
    e = srv.aws_error("ecs", "create-cluster", "--cluster-name", "cmk", "--configuration", cfg)
    assert e.code == "InvalidParameterException" and "AccessDeniedException" in e.message, e.message
    account = key.split(":")[4]

    def policy(fargate_actions):
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
             "Action": fargate_actions, "Resource": "*"}]})

    # Fargate may generate data keys but not create grants: the CreateGrant
    # DryRun fails and says so.
    srv.aws("kms", "put-key-policy", "--key-id", key, "--policy-name", "default",
            "--policy", policy(["kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext"]))
    e = srv.aws_error("ecs", "create-cluster", "--cluster-name", "cmk", "--configuration", cfg)
    assert "CreateGrant" in e.message and "AccessDeniedException" in e.message, e.message
    audit = srv.audit_records()
    dry = {(a["eventName"], a.get("errorCode")) for a in audit if key in json.dumps(a.get("resources"))
           and a["userIdentity"].get("invokedBy") == "fargate.amazonaws.com"}
    assert ("GenerateDataKeyWithoutPlaintext", "DryRunOperationException") in dry, dry
    assert ("CreateGrant", "AccessDeniedException") in dry, dry
    srv.aws("kms", "put-key-policy", "--key-id", key, "--policy-name", "default", "--policy", policy(
        ["kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant", "kms:Decrypt", "kms:RetireGrant", "kms:DescribeKey"]))
    srv.aws("ecs", "create-cluster", "--cluster-name", "cmk", "--configuration", cfg)
    name = "secure"
    srv.aws("ecs", "create-service", "--cluster", "cmk", "--service-name", name, "--task-definition",
            "svc-tiny", "--desired-count", "2", "--network-configuration", srv.netcfg)
    try:
        s = wait_steady(srv, name, "cmk")
        assert s["deployments"][0]["fargateEphemeralStorage"]["kmsKeyId"] == key
        first = tasks_of(srv, name, "cmk")
        for t in first:
            assert t["fargateEphemeralStorage"]["kmsKeyId"] == key
            assert luks_token(volume_of(srv, t)[0])["keyArn"] == key
        # Scenario 3: restart the tasks; the scheduler replaces them.
        for t in first:
            srv.aws("ecs", "stop-task", "--cluster", "cmk", "--task", t["taskArn"])
        deadline = time.time() + 60
        while time.time() < deadline:
            now = tasks_of(srv, name, "cmk")
            if len(now) == 2 and all(t["lastStatus"] == "RUNNING" for t in now) and \
                    not {t["taskArn"] for t in first} & {t["taskArn"] for t in now}:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"tasks were not replaced: {now}")
        for t in now:
            assert t["platformVersion"] == "1.4.0" and t["fargateEphemeralStorage"]["kmsKeyId"] == key
        # Disable the key: running tasks keep running, new ones fail.
        srv.aws("kms", "disable-key", "--key-id", key)
        srv.aws("ecs", "update-service", "--cluster", "cmk", "--service", name, "--desired-count", "3")
        deadline = time.time() + 30
        failed = []
        while time.time() < deadline and not failed:
            failed = [t for t in tasks_of(srv, name, "cmk", "STOPPED") if t.get("stopCode") == "TaskFailedToStart"]
            time.sleep(0.3)
        assert failed, "no task failed to start under a disabled key"
        assert key in failed[0]["stoppedReason"] and "disabled" in failed[0]["stoppedReason"], failed[0]["stoppedReason"]
        running = tasks_of(srv, name, "cmk")
        assert {t["taskArn"] for t in now} <= {t["taskArn"] for t in running if t["lastStatus"] == "RUNNING"}
        assert any("failed to start a task" in e["message"] for e in describe(srv, name, "cmk")["events"])
        srv.aws("kms", "enable-key", "--key-id", key)
        wait_steady(srv, name, "cmk", timeout=60)
        # Scheduled deletion: the same, with the key's state in the reason.
        srv.aws("kms", "schedule-key-deletion", "--key-id", key, "--pending-window-in-days", "7")
        running = {t["taskArn"] for t in tasks_of(srv, name, "cmk")}
        srv.aws("ecs", "stop-task", "--cluster", "cmk", "--task", sorted(running)[0])
        deadline = time.time() + 30
        pend = []
        while time.time() < deadline and not pend:
            pend = [t for t in tasks_of(srv, name, "cmk", "STOPPED")
                    if t.get("stopCode") == "TaskFailedToStart" and "pending deletion" in t["stoppedReason"]]
            time.sleep(0.3)
        assert pend and key in pend[0]["stoppedReason"], "no task failed to start under a key pending deletion"
        assert set(sorted(running)[1:]) <= {t["taskArn"] for t in tasks_of(srv, name, "cmk")}
        srv.aws("kms", "cancel-key-deletion", "--key-id", key)
        srv.aws("kms", "enable-key", "--key-id", key)
        wait_steady(srv, name, "cmk", timeout=60)
        # Rotation disturbs nothing: running tasks stay, a redeploy works.
        before = {t["taskArn"] for t in tasks_of(srv, name, "cmk")}
        srv.aws("kms", "rotate-key-on-demand", "--key-id", key)
        assert before == {t["taskArn"] for t in tasks_of(srv, name, "cmk") if t["lastStatus"] == "RUNNING"}
        # A new cluster key applies to new deployments only.
        key2 = srv.aws("kms", "create-key", "--policy", policy(
            ["kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant", "kms:Decrypt", "kms:RetireGrant",
             "kms:DescribeKey"]))["KeyMetadata"]["Arn"]
        cfg2 = json.dumps({"managedStorageConfiguration": {"fargateEphemeralStorageKmsKeyId": key2}})
        srv.aws("ecs", "update-cluster", "--cluster", "cmk", "--configuration", cfg2)
        srv.aws("ecs", "stop-task", "--cluster", "cmk", "--task", sorted(before)[0])
        s = wait_steady(srv, name, "cmk", timeout=60)
        assert all(t["fargateEphemeralStorage"]["kmsKeyId"] == key for t in tasks_of(srv, name, "cmk"))
        srv.aws("ecs", "update-service", "--cluster", "cmk", "--service", name, "--force-new-deployment")
        s = wait_steady(srv, name, "cmk", timeout=90)
        assert s["deployments"][0]["fargateEphemeralStorage"]["kmsKeyId"] == key2
        for t in tasks_of(srv, name, "cmk"):
            assert t["fargateEphemeralStorage"]["kmsKeyId"] == key2
            tok = luks_token(volume_of(srv, t)[0])
            assert tok["keyArn"] == key2 and tok["encryptionContext"]["ferry:taskArn"] == t["taskArn"]
        # The per-task flow is in the audit trail, by the service principal.
        audit = srv.audit_records()
        arn = first[0]["taskArn"]
        ops = {a["eventName"] for a in audit if arn in json.dumps(a.get("requestParameters"))
               and a["userIdentity"].get("invokedBy") == "fargate.amazonaws.com" and "errorCode" not in a}
        assert {"GenerateDataKeyWithoutPlaintext", "CreateGrant", "Decrypt"} <= ops, ops
        assert any(a["eventName"] == "RetireGrant" and key in json.dumps(a) and "errorCode" not in a
                   for a in audit)
    finally:
        cleanup(srv, name, "cmk")


def test_delete_requires_zero_or_force(srv):
    name = "del"
    srv.aws("ecs", "create-service", "--service-name", name, "--task-definition", "svc-tiny",
            "--desired-count", "1", "--network-configuration", srv.netcfg)
    try:
        e = srv.aws_error("ecs", "delete-service", "--service", name)
        assert e.code == "InvalidParameterException"
        assert name in srv.aws("ecs", "list-services")["serviceArns"][0]
    finally:
        cleanup(srv, name)
    assert describe(srv, name)["status"] == "INACTIVE"


def test_require_encrypted_storage_option(srv, tmp_path):
    """`ferry server --require-encrypted-storage` refuses 1.3.0; 1.3.0
    cannot hold more than 20 GiB."""
    from conftest import FerryServer
    strict = FerryServer(str(tmp_path / "data"), extra_args=["--require-encrypted-storage"])
    strict.start()
    try:
        p = tmp_path / "td.json"
        p.write_text(json.dumps(TD))
        strict.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
        e = strict.aws_error("ecs", "run-task", "--task-definition", "svc-tiny", "--platform-version", "1.3.0",
                             "--network-configuration", strict.netcfg)
        assert e.code == "ClientException" and "unencrypted" in e.message, e.message
        e = strict.aws_error("ecs", "create-service", "--service-name", "x", "--task-definition", "svc-tiny",
                             "--platform-version", "1.3.0", "--network-configuration", strict.netcfg)
        assert e.code == "ClientException" and "unencrypted" in e.message, e.message
    finally:
        assert strict.stop() == 0
    big = dict(TD, family="svc-big", ephemeralStorage={"sizeInGiB": 30})
    p = tmp_path / "big.json"
    p.write_text(json.dumps(big))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    e = srv.aws_error("ecs", "create-service", "--service-name", "big", "--task-definition", "svc-big",
                      "--platform-version", "1.3.0", "--network-configuration", srv.netcfg)
    assert e.code == "ClientException" and "1.4.0" in e.message, e.message


def test_a_protected_task_survives_scale_in(srv):
    """Task scale-in protection with the real AWS CLI: a service scaled in
    to zero keeps its protected task until the protection is lifted."""
    name = "guarded"
    srv.aws("ecs", "create-service", "--service-name", name, "--task-definition", "svc-tiny",
            "--desired-count", "2", "--launch-type", "FARGATE", "--network-configuration", srv.netcfg)
    try:
        wait_steady(srv, name)
        tasks = tasks_of(srv, name)
        keep, other = tasks[0]["taskArn"], tasks[1]["taskArn"]
        out = srv.aws("ecs", "update-task-protection", "--cluster", "default", "--tasks", keep,
                      "--protection-enabled", "--expires-in-minutes", "30")
        assert out["failures"] == []
        p = out["protectedTasks"][0]
        assert p["taskArn"] == keep and p["protectionEnabled"] is True
        assert 29 * 60 < p["expirationDate"] - time.time() <= 30 * 60 + 5
        got = srv.aws("ecs", "get-task-protection", "--cluster", "default", "--tasks", keep, other)
        assert [t["protectionEnabled"] for t in got["protectedTasks"]] == [True, False]

        srv.aws("ecs", "update-service", "--service", name, "--desired-count", "0")
        deadline = time.time() + 60
        while time.time() < deadline and tasks_of(srv, name, status="STOPPED") == []:
            time.sleep(0.3)
        time.sleep(2)  # several scheduler passes
        running = [t["taskArn"] for t in tasks_of(srv, name)]
        assert running == [keep], running
        stopped = srv.aws("ecs", "describe-tasks", "--tasks", other)["tasks"][0]
        assert stopped["desiredStatus"] == "STOPPED"

        # A standalone task cannot be protected.
        run = srv.aws("ecs", "run-task", "--task-definition", "svc-tiny", "--launch-type", "FARGATE",
                      "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]
        out = srv.aws("ecs", "update-task-protection", "--cluster", "default", "--tasks", run,
                      "--protection-enabled")
        assert out["failures"][0]["reason"] == "TASK_NOT_VALID"
        srv.aws("ecs", "stop-task", "--task", run)

        srv.aws("ecs", "update-task-protection", "--cluster", "default", "--tasks", keep,
                "--no-protection-enabled")
        deadline = time.time() + 60
        while time.time() < deadline and tasks_of(srv, name):
            time.sleep(0.3)
        assert tasks_of(srv, name) == []
    finally:
        cleanup(srv, name)
