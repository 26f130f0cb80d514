"""The ECS task metadata endpoint (v4, v3) on a real `ferry server`.

A container reads `$ECS_CONTAINER_METADATA_URI_V4`, `/task`, `/stats`,
`/task/stats` (and v3's `/task`) with busybox `wget` and prints them to its
awslogs stream; the test reads them back with the Logs API and checks the
fields AWS documents for Fargate. It then writes 100 MiB to the task's
ephemeral storage and sees `EphemeralStorageMetrics.Utilized` grow by that
much. A second task asks 169.254.170.2 for the first task's container and
gets nothing: in its namespace that address is its own endpoint.
"""

import datetime
import ipaddress
import json
import time

import pytest

from conftest import SOURCE_TD, TASK_SUBNET, host_resources, import_httpd, wait_status

GROUP = "/ecs/metadata"

# Serves port 80 itself (as most tasks do), then prints NAME=<one line of
# JSON> per request; statuses settle first (the control plane records
# RUNNING a moment after the process starts).
SCRIPT = r"""
httpd -f -p 80 -h /etc &
sleep 2
echo "APP80=$(wget -qO- http://127.0.0.1/hostname)"
echo "ENV_V4=$ECS_CONTAINER_METADATA_URI_V4"
echo "ENV_V3=$ECS_CONTAINER_METADATA_URI"
emit() { echo "$1=$(wget -qO- "$2" | tr -d '\n')"; }
emit C $ECS_CONTAINER_METADATA_URI_V4
emit T0 $ECS_CONTAINER_METADATA_URI_V4/task
emit S $ECS_CONTAINER_METADATA_URI_V4/stats
emit TS $ECS_CONTAINER_METADATA_URI_V4/task/stats
emit V3 $ECS_CONTAINER_METADATA_URI/task
echo "NOPE=$(wget -qO- $ECS_CONTAINER_METADATA_URI_V4/nope 2>&1 >/dev/null | tr -d '\n')"
dd if=/dev/zero of=/data/f bs=1M count=100 2>/dev/null
sync
emit T1 $ECS_CONTAINER_METADATA_URI_V4/task
echo DONE
exec sleep 3600
"""

PROBE = r"""
sleep 1
echo "OTHER=$(wget -qO- http://169.254.170.2/v4/%(other)s/task 2>/dev/null | tr -d '\n')"
wget -qO- http://169.254.170.2/v4/%(other)s/task >/dev/null 2>&1; echo "OTHER_RC=$?"
echo "OTHER_ERR=$(wget -qO- http://169.254.170.2/v4/%(other)s/task 2>&1 >/dev/null | tr -d '\n')"
echo "OWN=$(wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task | tr -d '\n')"
echo DONE
exec sleep 3600
"""


def task_def(family, script):
    doc = json.load(open(SOURCE_TD))
    doc["family"] = family
    c = doc["containerDefinitions"][0]
    c["name"] = "app"
    c["entryPoint"] = ["sh", "-c"]
    c["command"] = [script]
    c["portMappings"] = []
    c["stopTimeout"] = 2  # sleep as init ignores SIGTERM
    c["mountPoints"] = [{"sourceVolume": "scratch", "containerPath": "/data"}]
    c["logConfiguration"] = {"logDriver": "awslogs", "options": {
        "awslogs-group": GROUP, "awslogs-region": "us-east-1",
        "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}}
    doc["volumes"] = [{"name": "scratch"}]
    return doc


def register(srv, tmp_path, doc):
    p = tmp_path / f"{doc['family']}.json"
    p.write_text(json.dumps(doc))
    return srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")["taskDefinition"]


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


def check_container(c, arn, td, cluster_arn, ip, task_id, cidr):
    assert c["DockerId"] == f"{task_id}-app"
    assert c["Name"] == "app" and c["DockerName"] == "app"
    assert c["Image"] == "httpd:2.4"
    assert c["ImageID"].startswith("sha256:") and len(c["ImageID"]) == 71
    assert c["Labels"] == {
        "com.amazonaws.ecs.cluster": cluster_arn,
        "com.amazonaws.ecs.container-name": "app",
        "com.amazonaws.ecs.task-arn": arn,
        "com.amazonaws.ecs.task-definition-family": td["family"],
        "com.amazonaws.ecs.task-definition-version": str(td["revision"]),
    }
    assert c["DesiredStatus"] == "RUNNING" and c["KnownStatus"] == "RUNNING"
    assert set(c["Limits"]) == {"CPU", "Memory"}
    assert c["CreatedAt"].endswith("Z") and c["StartedAt"].endswith("Z")
    assert c["Type"] == "NORMAL"
    assert c["ContainerARN"].startswith("arn:aws:ecs:us-east-1:")
    (n,) = c["Networks"]
    assert n["NetworkMode"] == "awsvpc" and n["IPv4Addresses"] == [ip]
    assert n["AttachmentIndex"] == 0
    assert len(n["MACAddress"].split(":")) == 6 and n["MACAddress"] != "00:00:00:00:00:00"
    assert n["IPv4SubnetCIDRBlock"] == cidr
    assert n["PrivateDNSName"] == f"ip-{ip.replace('.', '-')}.ec2.internal"
    net = ipaddress.ip_network(cidr)
    assert n["SubnetGatewayIpv4Address"] == f"{net.network_address + 1}/{net.prefixlen}"


def iso_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def check_stats(s, docker_id):
    for k in ("read", "preread", "cpu_stats", "precpu_stats", "memory_stats", "networks",
              "blkio_stats", "pids_stats", "name", "id"):
        assert k in s, k
    assert s["id"] == docker_id and s["name"] == "/app"
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert s["cpu_stats"]["system_cpu_usage"] > 0 and s["cpu_stats"]["online_cpus"] >= 1
    assert s["memory_stats"]["usage"] > 0
    assert s["memory_stats"]["limit"] == 512 << 20
    assert s["networks"]["eth0"]["rx_bytes"] >= 0 and "tx_packets" in s["networks"]["eth0"]
    assert isinstance(s["blkio_stats"]["io_service_bytes_recursive"], list)


def test_task_metadata_endpoint(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    td = register(srv, tmp_path, task_def("metadata", SCRIPT))
    arn = srv.aws("ecs", "run-task", "--task-definition", "metadata", "--launch-type", "FARGATE",
                  "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]
    t, _ = wait_status(srv, arn, "RUNNING")
    task_id = arn.rsplit("/", 1)[1]
    ip = {d["name"]: d["value"] for d in t["attachments"][0]["details"]}["privateIPv4Address"]
    cluster_arn = t["clusterArn"]
    # The task's subnet: a default subnet inside the default VPC.
    subnet_id, _ = srv.default_network()
    cidr = srv.aws("ec2", "describe-subnets", "--subnet-ids", subnet_id)["Subnets"][0]["CidrBlock"]
    assert ipaddress.ip_network(cidr).subnet_of(ipaddress.ip_network(TASK_SUBNET)), cidr
    out = lines_of(srv, arn)
    docker_id = f"{task_id}-app"

    # The endpoint leaves port 80 of the task to the task.
    assert out["APP80"] == f"ip-{ip.replace('.', '-')}", out.get("APP80")
    assert out["ENV_V4"] == f"http://169.254.170.2/v4/{docker_id}"
    assert out["ENV_V3"] == f"http://169.254.170.2/v3/{docker_id}"
    check_container(json.loads(out["C"]), arn, td, cluster_arn, ip, task_id, cidr)

    task = json.loads(out["T0"])
    assert task["Cluster"] == cluster_arn
    assert task["TaskARN"] == arn
    assert task["Family"] == "metadata" and task["Revision"] == str(td["revision"])
    assert task["DesiredStatus"] == "RUNNING" and task["KnownStatus"] == "RUNNING"
    assert task["Limits"] == {"CPU": 0.25, "Memory": 512}
    # Go's RFC3339Nano, as the ECS agent writes it, trims trailing zeros
    # ("…53.5Z"), so the times are compared as times, not as strings.
    assert iso_time(task["PullStartedAt"]) <= iso_time(task["PullStoppedAt"])
    assert task["AvailabilityZone"] == "us-east-1a"
    assert task["LaunchType"] == "FARGATE"
    (c,) = task["Containers"]
    check_container(c, arn, td, cluster_arn, ip, task_id, cidr)
    m0 = task["EphemeralStorageMetrics"]
    assert m0["Reserved"] == 20 * 1024
    assert 0 < m0["Utilized"] < 1024

    check_stats(json.loads(out["S"]), docker_id)
    ts = json.loads(out["TS"])
    assert list(ts) == [docker_id]
    check_stats(ts[docker_id], docker_id)

    v3 = json.loads(out["V3"])
    assert v3["TaskARN"] == arn and "EphemeralStorageMetrics" not in v3
    assert v3["Containers"][0]["Networks"] == [{"NetworkMode": "awsvpc", "IPv4Addresses": [ip]}]
    assert "404" in out["NOPE"], out["NOPE"]

    grown = json.loads(out["T1"])["EphemeralStorageMetrics"]["Utilized"] - m0["Utilized"]
    assert 85 <= grown <= 115, grown

    # Statuses are current at request time: the control plane's view.
    desc = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
    assert desc["containers"][0]["containerArn"] == c["ContainerARN"]

    # A second task cannot read the first one's metadata.
    register(srv, tmp_path, task_def("probe", PROBE % {"other": docker_id}))
    arn2 = srv.aws("ecs", "run-task", "--task-definition", "probe", "--launch-type", "FARGATE",
                   "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]
    wait_status(srv, arn2, "RUNNING")
    out2 = lines_of(srv, arn2)
    assert out2["OTHER"] == "" and out2["OTHER_RC"] != "0", out2
    assert "404" in out2["OTHER_ERR"], out2  # its own endpoint: unknown container
    assert json.loads(out2["OWN"])["TaskARN"] == arn2

    for a in (arn, arn2):
        srv.aws("ecs", "stop-task", "--task", a)
    for a in (arn, arn2):
        wait_status(srv, a, "STOPPED")
    assert task_id not in host_resources()
