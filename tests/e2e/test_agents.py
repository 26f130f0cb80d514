"""Remote agents (issue 19, "Agents"): a PostgreSQL cluster, two API
replicas (--no-agent) and two `ferry agent` processes, each in a network
namespace of its own standing for a host (its own bridge, nftables table
and task subnet), with the real AWS CLI and boto3.

- a service of 6 tasks spreads over both agents (a task's address tells
  its host: each agent serves one default subnet with --subnet);
- kill -9 of the replica holding the scheduler lease: the other takes
  over and replaces a task stopped afterwards within 10 s;
- kill -9 of an agent: its tasks are recorded STOPPED with a reason naming
  the lost host and replaced on the other agent; when it comes back, the
  volumes of those tasks are crypto-shredded and their containers gone;
- reads through both replicas agree throughout; a KMS key created through
  one decrypts through the other; the audit trail has each call once.
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import (SOURCE_TD, FerryServer, create_source_log_group, ferry_bin, host_resources,
                      wait_ready_line)
from pg import PgCluster

SERVICE = "agents-web"
READY = re.compile(r"ferry agent: host (\S+) joined .* health on http://(\S+)/health")


def _worker():
    w = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(w[2:]) if w.startswith("gw") else 99


N = _worker()
# The replicas' side of the hosts' links: a bridge of the test's own in the
# root namespace; each host namespace has a veth on it.
BRIDGE = f"fab{N}"
NET = f"10.251.{N}"


def sh(*argv, check=True):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}", pytrace=False)
    return p


class Host:
    """A network namespace standing for a machine, and the `ferry agent`
    running in it (in the host's network namespace only: it shares the
    mount namespace, as a second machine's agent would its own)."""

    def __init__(self, root, letter, index, subnet, creds):
        self.name = f"e2e-agent-{letter}"
        self.netns = f"ferry-e2e-host{N}{letter}"
        self.addr = f"{NET}.{index}"
        self.veth = f"fav{N}{letter}"
        self.subnet = subnet
        self.creds = creds
        self.dir = os.path.join(root, self.name)
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "agent.log")
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        sh("ip", "link", "set", self.veth, "master", BRIDGE, "up")
        for argv in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "eth0", "up"],
                     ["ip", "addr", "add", f"{self.addr}/24", "dev", "eth0"]):
            sh("ip", "netns", "exec", self.netns, *argv)

    def start(self, servers, timeout=60):
        self._log = open(self.log_path, "a")
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", ferry_bin(), "agent",
               "--server", ",".join(s.endpoint for s in servers), "--credentials", self.creds,
               "--data-dir", self.data_dir, "--name", self.name, "--subnet", self.subnet,
               "--task-network", f"fa{N}{self.name[-1]}", "--stop-tasks-on-exit"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)
        m = wait_ready_line(self.proc, self._log, READY, timeout)
        if m is None:
            self.stop()
            pytest.fail(f"ferry agent {self.name} did not start; log:\n{self.log()}", pytrace=False)
        self.health_url = f"http://{m.group(2)}/health"
        return self

    def health(self):
        """GET /health inside the host's namespace: (status, body)."""
        p = subprocess.run(["ip", "netns", "exec", self.netns, "python3", "-c",
                            "import sys, urllib.request, urllib.error\n"
                            "try:\n"
                            f" r = urllib.request.urlopen('{self.health_url}', timeout=10); print(r.status); print(r.read().decode())\n"
                            "except urllib.error.HTTPError as e:\n"
                            " print(e.code); print(e.read().decode())\n"],
                           capture_output=True, text=True, timeout=30)
        status, _, body = p.stdout.partition("\n")
        return int(status), json.loads(body)

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self, timeout=180):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"agent {self.name} did not stop in {timeout} s", pytrace=False)
        return self.proc.returncode if self.proc else None

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def task_dirs(self):
        d = os.path.join(self.data_dir, "tasks")
        return set(os.listdir(d)) if os.path.isdir(d) else set()

    def close(self):
        sh("ip", "netns", "delete", self.netns, check=False)
        sh("ip", "link", "delete", self.veth, check=False)


def make_image(tmp, host):
    """The busybox stand-in for httpd:2.4, imported into the agent's image
    store (through its admin socket)."""
    archive = os.path.join(tmp, "httpd.tar")
    if not os.path.exists(archive):
        make = os.path.join(os.path.dirname(__file__), "..", "tools", "make_httpd_image.py")
        subprocess.run(["python3", make, "--format", "oci", "--name", "httpd:2.4", archive], check=True)
    p = subprocess.run([ferry_bin(), "image", "import", archive, "--name", "httpd:2.4",
                        "--data-dir", host.data_dir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"ferry image import into {host.name} failed: {p.stderr}"


def agent_credentials(server, name, out):
    key, _ = server.credentials()
    admin = os.path.join(os.path.dirname(server.data_dir), "admin-credentials")
    if not os.path.exists(admin):
        shutil.copy(os.path.join(server.data_dir, "credentials"), admin)
    p = subprocess.run([ferry_bin(), "agent-credentials", "--endpoint", server.endpoint,
                        "--credentials", admin, "--name", name, "--output", out],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"ferry agent-credentials failed: {p.stderr}"
    assert key not in open(out).read()


class Fleet:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="ferry-e2e-agents-")
        self.pg = PgCluster()
        self.hosts = []
        self.replicas = []
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{NET}.1/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        root_key = os.path.join(self.root, "root.key")
        for name in ("a", "b"):
            os.makedirs(os.path.join(self.root, name))
            self.replicas.append(FerryServer(os.path.join(self.root, name, "data"), pg=self.pg,
                                             root_key=root_key, listen=f"{NET}.1",
                                             extra_args=["--no-agent"], stop_tasks_on_exit=False))

    def close(self):
        rcs = []
        live = [r for r in self.replicas if r.proc and r.proc.poll() is None]
        for h in self.hosts:
            if h.proc is None and live:
                # Killed by the test (which failed before it came back): a
                # last start releases what it left, as a restart would.
                h.start(live)
            rcs.append(h.stop())
        for r in self.replicas:
            if r.proc and r.proc.poll() is None:
                rcs.append(r.stop())
        for h in self.hosts:
            h.close()
        sh("ip", "link", "delete", BRIDGE, check=False)
        self.pg.close()
        if os.environ.get("FERRY_E2E_KEEP"):
            print(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        return [rc for rc in rcs if rc is not None]


@pytest.fixture(scope="module")
def fleet():
    f = Fleet()
    try:
        a, b = f.replicas
        a.start()
        b.start()
        subnets = sorted(a.client("ec2").describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"],
            key=lambda s: s["AvailabilityZone"])[:2]
        f.subnets = subnets
        for i, (letter, sub) in enumerate(zip("ab", subnets)):
            creds = os.path.join(f.root, f"agent-{letter}.credentials")
            agent_credentials(a, f"e2e-agent-{letter}", creds)
            h = Host(f.root, letter, 2 + i, sub["CidrBlock"], creds)
            f.hosts.append(h)
            # Each agent names both replicas, its own first.
            h.start([f.replicas[i], f.replicas[1 - i]])
            make_image(f.root, h)
        yield f
    finally:
        rcs = f.close()
    assert all(rc == 0 for rc in rcs), f"a process exited with {rcs} on SIGTERM"


def host_of(fleet, task):
    """The agent a task runs on, by its address."""
    import ipaddress
    ip = ipaddress.ip_address(task["containers"][0]["networkInterfaces"][0]["privateIpv4Address"])
    for h in fleet.hosts:
        if ip in ipaddress.ip_network(h.subnet):
            return h.name
    raise AssertionError(f"{ip} is in no agent's subnet")


def service_tasks(srv, status="RUNNING"):
    arns = srv.aws("ecs", "list-tasks", "--service-name", SERVICE, "--desired-status", "RUNNING")["taskArns"]
    if not arns:
        return []
    tasks = srv.aws("ecs", "describe-tasks", "--tasks", *arns)["tasks"]
    return [t for t in tasks if status is None or t["lastStatus"] == status]


def wait_for(what, check, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        # (False, what was seen): not yet, and why.
        if last and not (isinstance(last, tuple) and last[0] is False):
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout} s (last: {last!r})", pytrace=False)


def agree(fleet):
    """What both live replicas answer about the service and its tasks."""
    seen = []
    for r in fleet.replicas:
        if r.proc is None or r.proc.poll() is not None:
            continue
        svc = r.aws("ecs", "describe-services", "--services", SERVICE)["services"][0]
        arns = sorted(r.aws("ecs", "list-tasks", "--service-name", SERVICE)["taskArns"])
        seen.append((svc["desiredCount"], svc["runningCount"], arns))
    assert len(seen) >= 1
    return seen


def scheduler_holder(fleet):
    """The replica whose log says it holds the scheduler lease last (the
    highest epoch)."""
    best = None
    for r in fleet.replicas:
        if r.proc is None or r.proc.poll() is not None:
            continue
        for m in re.finditer(r"holding the scheduler lease.*?epoch\W+(\d+)|epoch\W+(\d+).*holding the scheduler lease", r.log()):
            epoch = int(m.group(1) or m.group(2))
            if best is None or epoch > best[0]:
                best = (epoch, r)
    assert best, "no replica says it holds the scheduler lease"
    return best[1]


def test_an_agent_answers_health_and_a_wrong_key_is_refused_at_start(fleet):
    host_a = fleet.hosts[0]
    status, body = host_a.health()
    assert status == 200 and body["status"] == "ok" and body["name"] == host_a.name, body
    # A key that is no agent's (an IAM user's): refused, with the reason,
    # and the process exits instead of retrying.
    iam = fleet.replicas[0].client("iam")
    iam.create_user(UserName="e2e-not-agent")
    key = iam.create_access_key(UserName="e2e-not-agent")["AccessKey"]
    creds = os.path.join(fleet.root, "not-agent.credentials")
    with open(creds, "w") as f:
        f.write(f"[default]\naws_access_key_id = {key['AccessKeyId']}\n"
                f"aws_secret_access_key = {key['SecretAccessKey']}\n")
    p = subprocess.run(["nsenter", f"--net=/run/netns/{host_a.netns}", ferry_bin(), "agent",
                        "--server", fleet.replicas[0].endpoint, "--credentials", creds,
                        "--data-dir", os.path.join(fleet.root, "wrong-key"), "--name", "e2e-agent-x",
                        "--task-network", f"fx{N}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "AccessDeniedException" in p.stderr and "not an agent key" in p.stderr, p.stderr


def test_a_fleet_of_agents_runs_a_service_through_replica_and_agent_crashes(fleet):
    a, b = fleet.replicas
    host_a, host_b = fleet.hosts
    create_source_log_group(a)
    a.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    group = a.default_network()[1]
    subnets = ",".join(s["SubnetId"] for s in fleet.subnets)
    a.aws("ecs", "create-service", "--service-name", SERVICE, "--task-definition", "fargate-task-definition",
          "--desired-count", "6", "--launch-type", "FARGATE", "--network-configuration",
          f"awsvpcConfiguration={{subnets=[{subnets}],securityGroups=[{group}]}}")

    # Six tasks, over both agents; both replicas say the same.
    running = wait_for("6 tasks RUNNING", lambda: (lambda t: t if len(t) == 6 else None)(service_tasks(b)), 180)
    per_host = {}
    for t in running:
        per_host.setdefault(host_of(fleet, t), []).append(t["taskArn"])
    assert set(per_host) == {host_a.name, host_b.name}, per_host
    assert all(len(v) >= 2 for v in per_host.values()), per_host
    wait_for("replicas agree", lambda: (lambda s: s[0] == s[1] and s[0][1] == 6 and s)(agree(fleet)), 30)

    # kill -9 of the scheduler lease's holder: the other replica takes over
    # and replaces a task stopped afterwards within 10 s.
    holder = scheduler_holder(fleet)
    other = b if holder is a else a
    port = int(holder.endpoint.rsplit(":", 1)[1])
    holder.kill()
    victim = per_host[host_a.name][0]
    before = set(t["taskArn"] for t in service_tasks(other, status=None))
    other.aws("ecs", "stop-task", "--task", victim, "--reason", "e2e: stopped after the holder died")
    stopped_at = time.time()

    def replaced():
        new = [t for t in service_tasks(other, status=None) if t["taskArn"] not in before]
        return new or None
    new = wait_for("a replacement task", replaced, 10)
    assert time.time() - stopped_at <= 10
    wait_for("6 tasks RUNNING again", lambda: len(service_tasks(other)) == 6, 120)
    assert new[0]["taskArn"] != victim
    # The killed replica comes back and agrees.
    holder.start(port=port)
    wait_for("replicas agree again", lambda: (lambda s: len(s) == 2 and s[0] == s[1] and s)(agree(fleet)), 30)

    # kill -9 of agent B: its tasks are lost with it and replaced on A.
    on_b = [t["taskArn"] for t in service_tasks(a) if host_of(fleet, t) == host_b.name]
    assert on_b
    b_dirs = {arn.rsplit("/", 1)[1] for arn in on_b}
    assert b_dirs <= host_b.task_dirs(), (b_dirs, host_b.task_dirs())
    host_b.kill()

    def lost():
        ts = a.aws("ecs", "describe-tasks", "--tasks", *on_b)["tasks"]
        return all(t["lastStatus"] == "STOPPED" for t in ts) and ts
    gone = wait_for("agent B's tasks STOPPED", lost, 90)
    for t in gone:
        assert host_b.name in t["stoppedReason"], t["stoppedReason"]
        assert "stopped responding" in t["stoppedReason"], t["stoppedReason"]

    def all_on_a():
        ts = service_tasks(b, status=None)
        seen = sorted((t["lastStatus"], host_of(fleet, t) if t.get("containers") and
                       t["containers"][0].get("networkInterfaces") else "?") for t in ts)
        ok = len(ts) == 6 and all(s == ("RUNNING", host_a.name) for s in seen)
        return ok or (False, seen)
    assert wait_for("6 tasks RUNNING on agent A", all_on_a, 120) is True
    assert agree(fleet)[0] == agree(fleet)[1]

    # Agent B comes back: the tasks the control plane gave up on are
    # released there, their volumes crypto-shredded and their grants retired.
    platform = a.aws("kms", "describe-key", "--key-id", "alias/aws/ecs-ephemeral")["KeyMetadata"]["Arn"]

    def grants_of(arns):
        grants = a.aws("kms", "list-grants", "--key-id", platform)["Grants"]
        return [g for g in grants
                if g.get("Constraints", {}).get("EncryptionContextEquals", {}).get("ferry:taskArn") in arns]
    assert len(grants_of(on_b)) == len(on_b)
    host_b.start([b, a])
    wait_for("agent B's old volumes released", lambda: not (b_dirs & host_b.task_dirs()), 60)
    assert grants_of(on_b) == []
    left = host_resources()
    for tid in b_dirs:
        assert tid not in left, f"task {tid}'s resources (mounts, loop devices, netns, cgroups) outlived its release"
    # Agent B takes tasks again.
    a.aws("ecs", "update-service", "--service", SERVICE, "--desired-count", "8")
    wait_for("8 tasks RUNNING, some on agent B again",
             lambda: (lambda ts: len(ts) == 8 and any(host_of(fleet, t) == host_b.name for t in ts))(
                 service_tasks(a)), 120)

    # A KMS key created through one replica decrypts through the other; the
    # audit trail has each call exactly once.
    kms_a, kms_b = a.client("kms"), b.client("kms")
    kid = kms_a.create_key(Description="across replicas")["KeyMetadata"]["KeyId"]
    secret = b"fleet-secret-0123456789"
    ct = kms_a.encrypt(KeyId=kid, Plaintext=secret, EncryptionContext={"e2e": "agents"})["CiphertextBlob"]
    assert kms_b.decrypt(CiphertextBlob=ct, EncryptionContext={"e2e": "agents"})["Plaintext"] == secret
    records = b.audit_records()
    assert len({r["eventID"] for r in records}) == len(records)
    mine = [r["eventName"] for r in records if any(x["ARN"].endswith(kid) for x in r.get("resources", []))]
    assert mine == ["CreateKey", "Encrypt", "Decrypt"], mine
    # Each task's volume key was generated once, by the agent that ran it,
    # as the Fargate service principal with the agent's own key.
    for t in gone:
        made = [r for r in records if r["eventName"] == "GenerateDataKeyWithoutPlaintext"
                and r["requestParameters"].get("encryptionContext", {}).get("ferry:taskArn") == t["taskArn"]]
        assert len(made) == 1, (t["taskArn"], made)
        assert made[0]["userIdentity"]["type"] == "AWSService"
    assert base64.b64encode(secret).decode() not in b.audit_text()

    # Down to none: both agents release everything.
    a.aws("ecs", "update-service", "--service", SERVICE, "--desired-count", "0")
    wait_for("no task left", lambda: not service_tasks(a, status=None), 120)
    a.aws("ecs", "delete-service", "--service", SERVICE)
