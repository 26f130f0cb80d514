"""Container health checks end to end (boto3 against a real `ferry server`).

A task of three containers sharing an ephemeral volume:
- `init` (essential false) writes a marker and exits 0;
- `app` depends on `init` SUCCESS, checks the marker (exit 3 if missing),
  writes `/shared/ok` a few seconds in, and removes it later; its
  CMD-SHELL health check is `test -f /shared/ok` (interval 5, retries 2);
- `sidecar` (essential false) depends on `app` HEALTHY, checks the file is
  there (exit 4 if not), and exits 0 after a while.

And a service whose task turns UNHEALTHY gets it replaced.
"""

import json
import time

import pytest

from conftest import import_httpd

SHARED = [{"sourceVolume": "shared", "containerPath": "/shared"}]

TD = {
    "family": "health",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
    "volumes": [{"name": "shared"}],
    "containerDefinitions": [
        {"name": "init", "image": "httpd:2.4", "essential": False, "mountPoints": SHARED,
         "entryPoint": ["sh", "-c"], "command": ["echo done > /shared/init; exit 0"]},
        {"name": "app", "image": "httpd:2.4", "essential": True, "mountPoints": SHARED,
         "stopTimeout": 2,
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
         "entryPoint": ["sh", "-c"],
         "command": ["test -f /shared/init || exit 3; sleep 3; echo ok > /shared/ok; "
                     "sleep 16; rm /shared/ok; sleep 3600"],
         "healthCheck": {"command": ["CMD-SHELL", "test -f /shared/ok"],
                         "interval": 5, "timeout": 2, "retries": 2}},
        {"name": "sidecar", "image": "httpd:2.4", "essential": False, "mountPoints": SHARED,
         "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}],
         "entryPoint": ["sh", "-c"], "command": ["test -f /shared/ok || exit 4; sleep 3; exit 0"]},
    ],
}


@pytest.fixture(scope="module")
def srv(ferry_server_module, tmp_path_factory):
    s = ferry_server_module
    import_httpd(s, tmp_path_factory.mktemp("img"))
    return s


def containers(task):
    return {c["name"]: c for c in task["containers"]}


def test_health_check_dependencies_and_status(srv):
    ecs = srv.client("ecs")
    td = ecs.register_task_definition(**TD)["taskDefinition"]
    # Echoed as sent, with ECS's defaults (no startPeriod added).
    assert td["containerDefinitions"][1]["healthCheck"] == {
        "command": ["CMD-SHELL", "test -f /shared/ok"], "interval": 5, "timeout": 2, "retries": 2}

    # HEALTHY on a container without a health check is refused.
    bad = json.loads(json.dumps(TD))
    del bad["containerDefinitions"][1]["healthCheck"]
    with pytest.raises(ecs.exceptions.ClientException):
        ecs.register_task_definition(**bad)
    bad = json.loads(json.dumps(TD))
    bad["containerDefinitions"][1]["healthCheck"]["interval"] = 4
    with pytest.raises(ecs.exceptions.ClientException, match="interval must be between 5 and 300"):
        ecs.register_task_definition(**bad)

    arn = ecs.run_task(taskDefinition="health", launchType="FARGATE",
                       networkConfiguration=srv.network_configuration)["tasks"][0]["taskArn"]
    samples = []
    deadline = time.time() + 90
    phase = "healthy"
    while time.time() < deadline:
        t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        c = containers(t)
        samples.append((t["lastStatus"], t["healthStatus"], c["init"]["lastStatus"],
                        c["app"]["lastStatus"], c["app"]["healthStatus"], c["sidecar"]["lastStatus"]))
        assert t["lastStatus"] != "STOPPED", (t.get("stoppedReason"), samples[-5:])
        if phase == "healthy" and c["sidecar"]["lastStatus"] == "STOPPED":
            phase = "unhealthy"
        if phase == "unhealthy" and t["healthStatus"] == "UNHEALTHY":
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"no UNHEALTHY within 90 s: {samples[-10:]}\n{srv.log()[-3000:]}")

    # Start order: app only after init exited, sidecar only once app was HEALTHY.
    for (_, _, init, app, app_health, side) in samples:
        if app != "PENDING":
            assert init == "STOPPED", samples
        if side != "PENDING":
            assert app_health in ("HEALTHY", "UNHEALTHY"), samples
    # Health went UNKNOWN -> HEALTHY -> UNHEALTHY, task and container alike.
    task_health = [s[1] for s in samples if s[0] == "RUNNING"]
    seq = [h for i, h in enumerate(task_health) if i == 0 or task_health[i - 1] != h]
    assert seq == ["UNKNOWN", "HEALTHY", "UNHEALTHY"], seq
    app_health = [s[4] for s in samples]
    seq = [h for i, h in enumerate(app_health) if i == 0 or app_health[i - 1] != h]
    assert seq == ["UNKNOWN", "HEALTHY", "UNHEALTHY"], seq

    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    c = containers(t)
    # The sidecar's exit (code 0: the file was there when it started) did
    # not stop the task; an unhealthy standalone task keeps running, as in ECS.
    assert c["init"]["exitCode"] == 0
    assert c["sidecar"]["exitCode"] == 0
    assert c["sidecar"]["healthStatus"] == "UNKNOWN"
    assert t["desiredStatus"] == "RUNNING" and t["lastStatus"] == "RUNNING"
    assert c["app"]["lastStatus"] == "RUNNING"

    ecs.stop_task(task=arn, reason="end of health test")
    deadline = time.time() + 60
    while time.time() < deadline:
        t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        if t["lastStatus"] == "STOPPED":
            break
        time.sleep(0.25)
    assert t["lastStatus"] == "STOPPED"
    assert t["stopCode"] == "UserInitiated" and t["stoppedReason"] == "end of health test"
    c = containers(t)
    # sh as pid 1 ignores SIGTERM: killed after stopTimeout.
    assert c["app"]["exitCode"] == 137, c["app"]
    assert "stopTimeout" in c["app"].get("reason", ""), c["app"]
    assert c["app"]["healthStatus"] == "UNHEALTHY"


SVC_TD = {
    "family": "health-svc",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [{
        "name": "app", "image": "httpd:2.4", "essential": True, "stopTimeout": 2,
        "entryPoint": ["sh", "-c"],
        # Healthy for ~12 s, then the check fails.
        "command": ["echo ok > /tmp/ok; sleep 12; rm /tmp/ok; sleep 3600"],
        "healthCheck": {"command": ["CMD", "sh", "-c", "test -f /tmp/ok"],
                        "interval": 5, "timeout": 2, "retries": 1},
    }],
}


def test_service_replaces_a_task_that_fails_its_health_checks(srv):
    ecs = srv.client("ecs")
    ecs.register_task_definition(**SVC_TD)
    ecs.create_service(serviceName="hc", taskDefinition="health-svc", desiredCount=1,
                       launchType="FARGATE", networkConfiguration=srv.network_configuration)
    first = None
    deadline = time.time() + 120
    replaced = None
    steady_while_healthy = False
    while time.time() < deadline:
        s = ecs.describe_services(services=["hc"])["services"][0]
        msgs = [e["message"] for e in s["events"]]
        arns = ecs.list_tasks(serviceName="hc")["taskArns"]
        if arns and first is None:
            first = arns[0]
        if first:
            t = ecs.describe_tasks(tasks=[first])["tasks"][0]
            if any("steady state" in m for m in msgs) and t["healthStatus"] == "HEALTHY":
                steady_while_healthy = True
            if t["desiredStatus"] == "STOPPED":
                replaced = t
                break
        time.sleep(0.3)
    assert replaced is not None, f"the unhealthy task was not replaced: {msgs}"
    assert steady_while_healthy
    tid = first.rsplit("/", 1)[1]
    assert replaced["stopCode"] == "ServiceSchedulerInitiated"
    assert replaced["stoppedReason"] == "Task failed container health checks"
    assert replaced["healthStatus"] == "UNHEALTHY"
    s = ecs.describe_services(services=["hc"])["services"][0]
    assert f"(service hc) (task {tid}) failed container health checks." in [e["message"] for e in s["events"]]
    # A new task is started in its place.
    deadline = time.time() + 60
    while time.time() < deadline:
        arns = [a for a in ecs.list_tasks(serviceName="hc")["taskArns"] if a != first]
        if arns:
            break
        time.sleep(0.3)
    assert arns, "no replacement task"
    ecs.update_service(service="hc", desiredCount=0)
    ecs.delete_service(service="hc", force=True)
    deadline = time.time() + 60
    while time.time() < deadline and ecs.describe_services(services=["hc"])["services"][0]["status"] != "INACTIVE":
        time.sleep(0.5)
