"""RunTask -> RUNNING -> STOPPED with the real runtime, end to end.

The source document's task definition and run-task flags (plus
--endpoint-url), on a real `ferry server`: the container serves the page it
wrote at the task's address; the task's ephemeral storage is a LUKS2 volume
that `cryptsetup` reads and that holds none of the page; its data key came
from the KMS as the Fargate flow, audited; logs reach CloudWatch Logs; and
after stop-task the volume is crypto-shredded and nothing of the task is
left on the host. The image `httpd:2.4` is the busybox stand-in built by
tests/tools/make_httpd_image.py.
"""

import base64
import ipaddress
import json
import os
import re
import signal
import subprocess
import time

from conftest import (SOURCE_TD, TASK_SUBNET, allocated_data, create_source_log_group, host_resources,
                      import_httpd, pids_with_args, task_page, wait_status)

ORDER = ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING",
         "DEPROVISIONING", "STOPPED"]


def register_doc(srv, tmp_path, doc):
    """Registers a task definition given as a dict, through a JSON file."""
    p = tmp_path / f"{doc['family']}.json"
    p.write_text(json.dumps(doc))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")


def awslogs(group, prefix):
    """An awslogs logConfiguration that creates its group."""
    return {"logDriver": "awslogs", "options": {"awslogs-group": group, "awslogs-region": "us-east-1",
                                                "awslogs-stream-prefix": prefix, "awslogs-create-group": "true"}}


def run_family(srv, family):
    """RunTask on the default cluster; returns the task ARN."""
    return srv.aws("ecs", "run-task", "--task-definition", family, "--launch-type", "FARGATE",
                   "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]


def test_source_document_run_task_to_running_and_stopped(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    srv.aws("ecs", "create-cluster", "--cluster-name", "payments")
    create_source_log_group(srv)
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    # The source document's command, with --endpoint-url (added by srv.aws).
    out = srv.aws("ecs", "run-task", "--cluster", "payments",
                  "--task-definition", "fargate-task-definition:1",
                  "--count", "1", "--launch-type", "FARGATE",
                  "--platform-version", "1.4.0",
                  "--network-configuration", srv.netcfg,
                  "--region", "us-east-1")
    assert out["failures"] == []
    arn = out["tasks"][0]["taskArn"]
    assert re.fullmatch(r"arn:aws:ecs:us-east-1:\d{12}:task/payments/[0-9a-f]{32}", arn)

    t, seen = wait_status(srv, arn, "RUNNING", cluster="payments")
    assert seen == sorted(seen, key=ORDER.index), seen
    assert t["desiredStatus"] == "RUNNING"
    assert t["platformVersion"] == "1.4.0"
    assert t["ephemeralStorage"] == {"sizeInGiB": 20}
    assert t["fargateEphemeralStorage"] == {"sizeInGiB": 20}  # platform key: no kmsKeyId
    for k in ("createdAt", "pullStartedAt", "pullStoppedAt", "startedAt", "connectivityAt"):
        assert k in t, f"{k} missing"
    eni = t["attachments"][0]
    assert eni["type"] == "ElasticNetworkInterface" and eni["status"] == "ATTACHED"
    ip = {d["name"]: d["value"] for d in eni["details"]}["privateIPv4Address"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(TASK_SUBNET), ip
    c = t["containers"][0]
    assert c["name"] == "sample-fargate-app" and c["lastStatus"] == "RUNNING"
    assert c["networkBindings"] == [{"bindIP": ip, "containerPort": 80, "hostPort": 80, "protocol": "tcp"}]
    assert arn in srv.aws("ecs", "list-tasks", "--cluster", "payments")["taskArns"]
    cl = srv.aws("ecs", "describe-clusters", "--clusters", "payments")["clusters"][0]
    assert cl["runningTasksCount"] == 1

    # The page the source document's command wrote is served from the task's address.
    body = task_page(ip)
    assert "Payment Processing Web Interface" in body
    assert "Amazon ECS Sample App" in body

    # Its ephemeral storage: a sparse LUKS2 volume that cryptsetup reads,
    # with the ferry-kms token, and none of the page in it.
    task_id = arn.rsplit("/", 1)[1]
    vol = os.path.join(srv.data_dir, "tasks", task_id, "volume.luks")
    st = os.stat(vol)
    assert 20 << 30 < st.st_size <= (20 << 30) + (16 << 20), st.st_size
    assert st.st_blocks * 512 < 256 << 20, "a new 20 GiB volume must be sparse"
    dump = subprocess.run(["cryptsetup", "luksDump", vol], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Version:\s+2", dump), dump
    assert "aes-xts-plain64" in dump and "ferry-kms" in dump, dump
    assert re.search(r"sector:\s+4096", dump), dump
    # Token 0 says how to open it: with KMS permission to decrypt the wrapped
    # data key under its context, stock cryptsetup unlocks the live volume.
    token = json.loads(subprocess.run(["cryptsetup", "token", "export", "--token-id", "0", vol],
                                      capture_output=True, text=True, check=True).stdout)
    assert token["type"] == "ferry-kms" and token["keyslots"] == ["0"]
    assert token["encryptionContext"] == {"aws:ecs:clusterAccount": arn.split(":")[4],
                                          "aws:ecs:clusterName": "payments", "ferry:taskArn": arn}
    platform = srv.aws("kms", "describe-key", "--key-id", "alias/aws/ecs-ephemeral")["KeyMetadata"]["Arn"]
    assert token["keyArn"] == platform
    data_key = srv.client("kms").decrypt(CiphertextBlob=base64.b64decode(token["wrappedDataKey"]),
                                         EncryptionContext=token["encryptionContext"])["Plaintext"]
    assert len(data_key) == 64
    keyfile = tmp_path / "data-key"
    keyfile.write_bytes(data_key)
    try:
        subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file", str(keyfile), vol], check=True)
    finally:
        keyfile.unlink()

    scanned = 0
    for chunk in allocated_data(vol):
        scanned += len(chunk)
        assert b"Payment Processing" not in chunk and b"Amazon ECS Sample App" not in chunk
    assert scanned > 0, "the volume has no allocated data at all"

    # Its data key: the Fargate flow, by the service principal, audited.
    audit = srv.audit_records()
    mine = [e for e in audit if arn in json.dumps(e.get("requestParameters"))]
    names = [e["eventName"] for e in mine]
    assert names[:3] == ["GenerateDataKeyWithoutPlaintext", "CreateGrant", "Decrypt"], names
    assert all("fargate.amazonaws.com" in json.dumps(e["userIdentity"]) for e in mine[:3])
    assert all("errorCode" not in e for e in mine[:3]), mine[:3]

    srv.aws("ecs", "stop-task", "--cluster", "payments", "--task", arn, "--reason", "end of e2e test")
    t, seen = wait_status(srv, arn, "STOPPED", cluster="payments")
    assert t["desiredStatus"] == "STOPPED"
    assert t["stopCode"] == "UserInitiated"
    assert t["stoppedReason"] == "end of e2e test"
    assert t["containers"][0]["lastStatus"] == "STOPPED"
    assert "exitCode" in t["containers"][0]
    assert t["startedAt"] <= t["stoppingAt"] <= t["executionStoppedAt"] <= t["stoppedAt"]
    assert t["attachments"][0]["status"] == "DELETED"
    assert arn in srv.aws("ecs", "list-tasks", "--cluster", "payments", "--desired-status", "STOPPED")["taskArns"]

    # Crypto-shredded, grant retired, and nothing of the task left behind.
    assert not os.path.exists(vol)
    audit = srv.audit_records()
    assert any(e["eventName"] == "RetireGrant" and "errorCode" not in e for e in audit)
    assert task_id not in host_resources(), "task resources left on the host"


def test_failure_to_start_and_essential_exit(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    create_source_log_group(srv)
    doc = json.load(open(SOURCE_TD))
    doc["family"] = "exits"
    doc["containerDefinitions"][0]["command"] = ["echo task-says-hello; exit 3"]
    register_doc(srv, tmp_path, doc)
    arn = run_family(srv, "exits")
    t, _ = wait_status(srv, arn, "STOPPED")
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["containers"][0]["exitCode"] == 3
    # Its output reached CloudWatch Logs under PREFIX/CONTAINER/TASK_ID.
    stream = f"ecs/sample-fargate-app/{arn.rsplit('/', 1)[1]}"
    ev = srv.aws("logs", "get-log-events", "--log-group-name", "/ecs/fargate-task-definition",
                 "--log-stream-name", stream, "--start-from-head")["events"]
    assert [e["message"] for e in ev] == ["task-says-hello"], ev
    hits = srv.aws("logs", "filter-log-events", "--log-group-name", "/ecs/fargate-task-definition",
                   "--filter-pattern", "says")["events"]
    assert any(h["logStreamName"] == stream for h in hits), hits
    streams = srv.aws("logs", "describe-log-streams", "--log-group-name", "/ecs/fargate-task-definition")
    assert stream in [x["logStreamName"] for x in streams["logStreams"]]

    doc["family"] = "noimage"
    doc["containerDefinitions"][0]["image"] = "httpd:9"
    register_doc(srv, tmp_path, doc)
    arn = run_family(srv, "noimage")
    t, _ = wait_status(srv, arn, "STOPPED")
    assert t["stopCode"] == "TaskFailedToStart"
    assert "httpd:9" in t["stoppedReason"]
    assert "startedAt" not in t


def test_awslogs_contract_group_must_exist_and_stream_opens_at_start(ferry_server, tmp_path):
    """awslogs as Fargate does it: a missing group fails the task with the
    driver's reason (naming the group) unless awslogs-create-group is
    "true"; with it, the group is created, and the stream exists from the
    container's start, before its first line."""
    srv = ferry_server
    import_httpd(srv, tmp_path)

    def register(family, group, create, command):
        options = {"awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "ecs"}
        if create is not None:
            options["awslogs-create-group"] = create
        doc = {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
               "cpu": "256", "memory": "512",
               "containerDefinitions": [{"name": "app", "image": "httpd:2.4", "stopTimeout": 1,
                                         "entryPoint": ["sh", "-c"], "command": [command],
                                         "logConfiguration": {"logDriver": "awslogs", "options": options}}]}
        p = tmp_path / f"{family}.json"
        p.write_text(json.dumps(doc))
        srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")

    def run(family):
        return srv.aws("ecs", "run-task", "--task-definition", family, "--launch-type", "FARGATE",
                       "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]

    # No group, no awslogs-create-group (and "false" is the same): the task never starts.
    for family, create in [("nogroup", None), ("nogroup-false", "false")]:
        register(family, "/ecs/e2e-missing", create, "echo never")
        t, _ = wait_status(srv, run(family), "STOPPED")
        assert t["stopCode"] == "TaskFailedToStart", t
        reason = t["stoppedReason"]
        assert reason.startswith("ResourceInitializationError: failed to validate logger args"), reason
        assert "/ecs/e2e-missing" in reason and "ResourceNotFoundException" in reason, reason
        assert "startedAt" not in t
    groups = srv.aws("logs", "describe-log-groups", "--log-group-name-prefix", "/ecs/e2e-missing")
    assert groups["logGroups"] == []

    # awslogs-create-group "true": the group is made; the stream is there
    # while the container is still silent, and then gets its lines.
    # The container stays silent for 12 s: long enough for three AWS CLI
    # calls on a busy CI machine.
    register("mkgroup", "/ecs/e2e-created", "true", "sleep 12; echo first-line; sleep 3600")
    arn = run("mkgroup")
    wait_status(srv, arn, "RUNNING")
    stream = f"ecs/app/{arn.rsplit('/', 1)[1]}"
    streams = srv.aws("logs", "describe-log-streams", "--log-group-name", "/ecs/e2e-created")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [stream]
    assert srv.aws("logs", "get-log-events", "--log-group-name", "/ecs/e2e-created",
                   "--log-stream-name", stream)["events"] == []
    deadline = time.time() + 45
    while time.time() < deadline:
        ev = srv.aws("logs", "get-log-events", "--log-group-name", "/ecs/e2e-created",
                     "--log-stream-name", stream)["events"]
        if ev:
            break
        time.sleep(0.2)
    assert [e["message"] for e in ev] == ["first-line"], ev
    srv.aws("ecs", "stop-task", "--task", arn)
    wait_status(srv, arn, "STOPPED")


def test_stop_timeout_kills_a_container_that_ignores_sigterm(ferry_server, tmp_path):
    """StopTask sends SIGTERM; a container that ignores it is killed with
    SIGKILL once its stopTimeout has passed (measured), and the reason
    given to StopTask is the task's stoppedReason."""
    srv = ferry_server
    import_httpd(srv, tmp_path)
    doc = {"family": "stubborn", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
           "cpu": "256", "memory": "512",
           "containerDefinitions": [
               {"name": "stubborn", "image": "httpd:2.4", "stopTimeout": 4,
                "entryPoint": ["sh", "-c"], "command": ["trap '' TERM; while true; do sleep 1; done"]},
               {"name": "polite", "image": "httpd:2.4", "essential": False, "stopTimeout": 4,
                "entryPoint": ["sh", "-c"], "command": ["trap 'exit 0' TERM; while true; do sleep 0.1; done"]}]}
    register_doc(srv, tmp_path, doc)
    arn = run_family(srv, "stubborn")
    wait_status(srv, arn, "RUNNING")
    t0 = time.time()
    srv.aws("ecs", "stop-task", "--task", arn, "--reason", "draining for maintenance")
    t, _ = wait_status(srv, arn, "STOPPED")
    took = time.time() - t0
    by_name = {c["name"]: c for c in t["containers"]}
    # SIGKILL (128 + 9) after 4 s for the one that ignored SIGTERM; the
    # other exited on SIGTERM at once, with its own code.
    assert by_name["stubborn"]["exitCode"] == 137, by_name
    assert by_name["polite"]["exitCode"] == 0, by_name
    assert 4.0 <= took < 15.0, took
    assert 4.0 <= t["executionStoppedAt"] - t["stoppingAt"] < 10.0, t
    assert t["stopCode"] == "UserInitiated"
    assert t["stoppedReason"] == "draining for maintenance"


def test_container_memory_limit_is_enforced_with_fargates_reason(ferry_server, tmp_path):
    """A container's hard `memory` limit is a cgroup limit: going over it
    gets the container killed with Fargate's reason, and the essential
    container's exit stops the task."""
    srv = ferry_server
    import_httpd(srv, tmp_path)
    doc = {"family": "hog", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
           "cpu": "256", "memory": "512",
           "containerDefinitions": [
               {"name": "hog", "image": "httpd:2.4", "memory": 64, "memoryReservation": 32, "cpu": 128,
                # dd's 200 MiB block buffer cannot fit in 64 MiB.
                "entryPoint": ["sh", "-c"],
                "command": ["exec dd if=/dev/zero of=/dev/null bs=200M count=1"]}]}
    register_doc(srv, tmp_path, doc)
    arn = run_family(srv, "hog")
    t, _ = wait_status(srv, arn, "STOPPED")
    c = t["containers"][0]
    assert c["exitCode"] == 137, c
    assert c["reason"] == "OutOfMemoryError: Container killed due to memory usage", c
    assert c["memory"] == "64" and c["memoryReservation"] == "32" and c["cpu"] == "128", c
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["stoppedReason"] == "Essential container in task exited"


def test_containers_stop_in_reverse_dependency_order(ferry_server, tmp_path):
    """At StopTask the app (which dependsOn the sidecar) gets SIGTERM
    first; the sidecar only once the app has exited, as on Fargate."""
    srv = ferry_server
    import_httpd(srv, tmp_path)
    logs = awslogs("/e2e/order", "o")
    doc = {"family": "order", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
           "cpu": "256", "memory": "512",
           "containerDefinitions": [
               {"name": "app", "image": "httpd:2.4", "stopTimeout": 10, "logConfiguration": logs,
                "dependsOn": [{"containerName": "side", "condition": "START"}],
                "entryPoint": ["sh", "-c"],
                "command": ["trap 'echo app-term; sleep 2; echo app-done; exit 0' TERM; "
                            "while true; do sleep 0.1; done"]},
               {"name": "side", "image": "httpd:2.4", "essential": False, "stopTimeout": 10,
                "logConfiguration": logs, "entryPoint": ["sh", "-c"],
                "command": ["trap 'echo side-term; exit 0' TERM; while true; do sleep 0.1; done"]}]}
    register_doc(srv, tmp_path, doc)
    arn = run_family(srv, "order")
    wait_status(srv, arn, "RUNNING")
    srv.aws("ecs", "stop-task", "--task", arn)
    t, _ = wait_status(srv, arn, "STOPPED")
    assert {c["name"]: c["exitCode"] for c in t["containers"]} == {"app": 0, "side": 0}, t["containers"]
    tid = arn.rsplit("/", 1)[1]

    def events(name):
        return {e["message"]: e["timestamp"] for e in srv.aws(
            "logs", "get-log-events", "--log-group-name", "/e2e/order",
            "--log-stream-name", f"o/{name}/{tid}", "--start-from-head")["events"]}
    app, side = events("app"), events("side")
    assert "app-term" in app and "app-done" in app and "side-term" in side, (app, side)
    # The sidecar's SIGTERM came after the app had finished its own.
    assert side["side-term"] >= app["app-done"], (app, side)
    assert side["side-term"] - app["app-term"] >= 1500, (app, side)


def test_start_timeout_bounds_the_wait_for_a_dependency(ferry_server, tmp_path):
    """A container's startTimeout bounds how long its dependents wait for
    it: the app waits for `slow` to be HEALTHY, slow never is, and after
    slow's 3 s the essential app gives up and the task fails to start."""
    srv = ferry_server
    import_httpd(srv, tmp_path)
    doc = {"family": "slowdep", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
           "cpu": "256", "memory": "512",
           "containerDefinitions": [
               {"name": "slow", "image": "httpd:2.4", "essential": False, "startTimeout": 3, "stopTimeout": 1,
                "entryPoint": ["sh", "-c"], "command": ["sleep 3600"],
                "healthCheck": {"command": ["CMD-SHELL", "false"], "interval": 30}},
               {"name": "app", "image": "httpd:2.4", "stopTimeout": 1,
                "dependsOn": [{"containerName": "slow", "condition": "HEALTHY"}],
                "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]}]}
    p = tmp_path / "slowdep.json"
    p.write_text(json.dumps(doc))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    bad = dict(doc, family="badtimeout")
    bad["containerDefinitions"] = [dict(doc["containerDefinitions"][0], startTimeout=121)]
    p.write_text(json.dumps(bad))
    e = srv.aws_error("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    assert e.code == "ClientException" and "startTimeout" in e.message, e.message

    t0 = time.time()
    arn = srv.aws("ecs", "run-task", "--task-definition", "slowdep", "--launch-type", "FARGATE",
                  "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]
    t, _ = wait_status(srv, arn, "STOPPED")
    took = time.time() - t0
    assert t["stopCode"] == "TaskFailedToStart", t
    assert "startTimeout (3 s)" in t["stoppedReason"] and "slow" in t["stoppedReason"], t["stoppedReason"]
    assert 3.0 <= took < 20.0, took


def shim_pids(task_id):
    """Pids of the `ferry shim` processes of a task."""
    return pids_with_args("shim", task_id)


def test_after_a_crash_the_next_start_releases_tasks_and_retires_their_grants(ferry_server, tmp_path):
    """kill -9 of the server and of the task's shim: nothing can re-adopt
    the task, so the next start releases it (volume shredded, nothing left
    on the host), records it STOPPED, and retires the Decrypt grant its
    volume key was unwrapped under (it used to leak). kill -9 of the server
    alone re-adopts it (tests/e2e/test_restart.py)."""
    srv = ferry_server
    import_httpd(srv, tmp_path)
    register_doc(srv, tmp_path, {
        "family": "crash", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "app", "image": "httpd:2.4", "stopTimeout": 1,
                                  "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]}]})
    arn = run_family(srv, "crash")
    wait_status(srv, arn, "RUNNING")
    task_id = arn.rsplit("/", 1)[1]
    platform = srv.aws("kms", "describe-key", "--key-id", "alias/aws/ecs-ephemeral")["KeyMetadata"]["Arn"]

    def grants_of_task():
        grants = srv.aws("kms", "list-grants", "--key-id", platform)["Grants"]
        return [g for g in grants
                if g.get("Constraints", {}).get("EncryptionContextEquals", {}).get("ferry:taskArn") == arn]
    assert len(grants_of_task()) == 1
    vol_dir = os.path.join(srv.data_dir, "tasks", task_id)
    assert os.path.exists(os.path.join(vol_dir, "volume.luks"))

    shims = shim_pids(task_id)
    assert len(shims) == 1, f"expected one shim for the task, found {shims}"
    srv.kill()
    os.kill(shims[0], signal.SIGKILL)
    srv.start()

    t, _ = wait_status(srv, arn, "STOPPED")
    assert t["stopCode"] in ("TaskFailedToStart", "EssentialContainerExited"), t
    assert "restarted" in t["stoppedReason"], t["stoppedReason"]
    assert grants_of_task() == []
    assert not os.path.exists(vol_dir)
    assert task_id not in host_resources(), "task resources left on the host"
    audit = srv.audit_records()
    assert any(e["eventName"] == "RetireGrant" and "errorCode" not in e
               and "fargate.amazonaws.com" in json.dumps(e["userIdentity"]) for e in audit[-20:])


def test_linux_parameters_capabilities_reach_the_container(ferry_server, tmp_path):
    """linuxParameters.capabilities as Fargate allows them: SYS_PTRACE added,
    NET_RAW dropped, seen in the container's own CapEff."""
    srv = ferry_server
    import_httpd(srv, tmp_path)
    logs = awslogs("/e2e/caps", "c")
    register_doc(srv, tmp_path, {
        "family": "caps", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{
            "name": "app", "image": "httpd:2.4", "logConfiguration": logs,
            "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE"], "drop": ["NET_RAW"]}},
            "entryPoint": ["sh", "-c"], "command": ["cat /proc/self/status"]}]})
    arn = run_family(srv, "caps")
    t, _ = wait_status(srv, arn, "STOPPED")
    assert t["containers"][0]["exitCode"] == 0, t
    ev = srv.aws("logs", "get-log-events", "--log-group-name", "/e2e/caps", "--start-from-head",
                 "--log-stream-name", f"c/app/{arn.rsplit('/', 1)[1]}")["events"]
    cap_eff = next(e["message"] for e in ev if e["message"].startswith("CapEff:"))
    bits = int(cap_eff.split()[1], 16)
    SYS_PTRACE, NET_RAW, KILL = 19, 13, 5
    assert bits & (1 << SYS_PTRACE), cap_eff
    assert not bits & (1 << NET_RAW), cap_eff
    assert bits & (1 << KILL), cap_eff


def test_a_task_cannot_make_namespaces_or_fork_without_bound(ferry_server, tmp_path):
    """Host protections per task: creating a user namespace (`unshare -Ur`)
    is refused by the seccomp profile, and a fork bomb stops at the task's
    pids limit (1024 by default) instead of the host's."""
    srv = ferry_server
    import_httpd(srv, tmp_path)
    logs = awslogs("/e2e/limits", "l")
    register_doc(srv, tmp_path, {
        "family": "limits", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{
            "name": "app", "image": "httpd:2.4", "logConfiguration": logs, "stopTimeout": 1,
            "entryPoint": ["sh", "-c"],
            # The bomb runs in a subshell (ash gives up on a failed fork);
            # the container's shell then waits without forking again.
            "command": ["unshare -Ur id; echo unshare-rc=$?; "
                        "(for i in $(seq 2000); do sleep 300 & done); echo forked; exec sleep 3600"]}]})
    arn = run_family(srv, "limits")
    wait_status(srv, arn, "RUNNING")
    task_id = arn.rsplit("/", 1)[1]
    stream = f"l/app/{task_id}"
    deadline = time.time() + 60
    msgs = []
    while time.time() < deadline:
        msgs = [e["message"] for e in srv.aws("logs", "get-log-events", "--log-group-name", "/e2e/limits",
                                                "--log-stream-name", stream, "--start-from-head")["events"]]
        if any("can't fork" in m or m == "forked" for m in msgs):
            break
        time.sleep(0.5)
    rc = next(m for m in msgs if m.startswith("unshare-rc="))
    assert rc != "unshare-rc=0", msgs[:5]
    assert not any(m.startswith("uid=0") for m in msgs), msgs[:5]
    assert any("can't fork" in m for m in msgs), msgs[-5:]
    pids = f"/sys/fs/cgroup/pids/ferry/{task_id}"
    assert open(f"{pids}/pids.max").read().strip() == "1024"
    assert int(open(f"{pids}/pids.current").read()) <= 1024
    srv.aws("ecs", "stop-task", "--task", arn)
    wait_status(srv, arn, "STOPPED")
