"""Images pulled at task start, with no `ferry image` step.

Each test starts its own Debian `docker-registry` (the CNCF distribution
server) on a free loopback port, pushes the busybox httpd stand-in to it
with `skopeo`, and runs tasks naming `127.0.0.1:PORT/httpd:2.4`. The
registry's access log (stdout, one line per request with the user agent)
counts what ferry asked for: a cached image is not asked for again, and
tasks started together pull once. Failures are STOPPED tasks with
CannotPullContainerError in the words Fargate uses. A registry with
htpasswd auth is pulled from with `repositoryCredentials`: a Secrets
Manager secret read as the execution role.
"""

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
import warnings

import pytest

with warnings.catch_warnings():
    # Deprecated in 3.11; its bcrypt is what docker-registry's htpasswd takes.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

from conftest import (MAKE_IMAGE, SOURCE_TD, create_source_log_group, private_ip, task_page,
                      wait_status, wait_stopped)

PAGE = "Payment Processing Web Interface"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """`docker-registry serve` on 127.0.0.1:PORT, optionally with htpasswd
    auth for one user."""

    def __init__(self, tmp_path, user=None, password=None):
        self.dir = tmp_path / f"registry-{time.monotonic_ns()}"
        self.dir.mkdir()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.auth = (user, password) if user else None
        cfg = (f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
               f"    rootdirectory: {self.dir / 'data'}\nhttp:\n  addr: {self.host}\n")
        if user:
            htpasswd = self.dir / "htpasswd"
            # bcrypt, the one scheme docker-registry's htpasswd accepts.
            htpasswd.write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
            cfg += f"auth:\n  htpasswd:\n    realm: ferry-test\n    path: {htpasswd}\n"
        (self.dir / "config.yml").write_text(cfg)
        self.log_path = self.dir / "access.log"
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=self.log_file, stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2)
                break
            except urllib.error.HTTPError as e:
                if e.code == 401 and user:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None, "docker-registry exited"
            assert time.time() < deadline, f"docker-registry did not come up on {self.host}"
            time.sleep(0.1)

    def push_httpd(self, tmp_path, ref="httpd:2.4"):
        archive = tmp_path / "httpd-oci.tar"
        if not archive.exists():
            subprocess.run(["python3", MAKE_IMAGE, "--format", "oci", "--name", "httpd:2.4", str(archive)],
                           check=True)
        cmd = ["skopeo", "copy", "--quiet", f"oci-archive:{archive}", f"docker://{self.host}/{ref}",
               "--dest-tls-verify=false"]
        if self.auth:
            cmd.append(f"--dest-creds={self.auth[0]}:{self.auth[1]}")
        subprocess.run(cmd, check=True, timeout=120)

    def ferry_requests(self):
        """(method, path, status) of every request ferry made (its user agent)."""
        self.log_file.flush()
        out = []
        for line in self.log_path.read_text().splitlines():
            m = re.search(r'"(\w+) (\S+) HTTP/[\d.]+" (\d+) .*"ferry"$', line)
            if m:
                out.append((m.group(1), m.group(2), int(m.group(3))))
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()


@pytest.fixture
def registries(tmp_path):
    started = []

    def start(**kw):
        r = Registry(tmp_path, **kw)
        started.append(r)
        return r
    yield start
    for r in started:
        r.stop()


def register(srv, tmp_path, image, family="pulled", repository_credentials=None):
    """The source document's task definition, with `image` (and
    repositoryCredentials when given)."""
    doc = json.loads(open(SOURCE_TD).read())
    doc["family"] = family
    c = doc["containerDefinitions"][0]
    c["image"] = image
    if repository_credentials:
        c["repositoryCredentials"] = {"credentialsParameter": repository_credentials}
    p = tmp_path / f"{family}.json"
    p.write_text(json.dumps(doc))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")


def run(srv, family="pulled", count=1):
    out = srv.aws("ecs", "run-task", "--task-definition", family, "--launch-type", "FARGATE",
                  "--count", str(count), "--network-configuration", srv.netcfg)
    assert out["failures"] == []
    return [t["taskArn"] for t in out["tasks"]]


def stop_and_wait(srv, arn):
    srv.aws("ecs", "stop-task", "--task", arn)
    wait_status(srv, arn, "STOPPED")


def blob_gets(reqs):
    return [p for m, p, s in reqs if m == "GET" and "/blobs/" in p]


def serves_page(task):
    body = task_page(private_ip(task))
    return PAGE in body


def test_a_task_pulls_its_image_at_start_and_the_next_one_finds_it_cached(ferry_server, registries, tmp_path):
    srv = ferry_server
    reg = registries()
    reg.push_httpd(tmp_path)
    create_source_log_group(srv)
    image = f"{reg.host}/httpd:2.4"
    register(srv, tmp_path, image)

    [arn] = run(srv)
    t, _ = wait_status(srv, arn, "RUNNING")
    assert serves_page(t)
    assert t["pullStartedAt"] <= t["pullStoppedAt"] <= t["startedAt"], t
    assert t["connectivityAt"] <= t["pullStartedAt"], t
    assert t["containers"][0]["image"] == image
    first = reg.ferry_requests()
    blobs = blob_gets(first)
    # The config and the layer, once each, all answered 200.
    assert len(blobs) >= 2 and len(set(blobs)) == len(blobs), first
    assert all(s == 200 for _, _, s in first), first
    assert any("/manifests/2.4" in p for _, p, _ in first), first
    stop_and_wait(srv, arn)

    # A second task: the image is in the store; the registry hears nothing.
    [arn2] = run(srv)
    t2, _ = wait_status(srv, arn2, "RUNNING")
    assert serves_page(t2)
    assert t2["pullStartedAt"] <= t2["pullStoppedAt"] <= t2["startedAt"], t2
    assert reg.ferry_requests() == first
    stop_and_wait(srv, arn2)


def test_tasks_started_together_pull_once(ferry_server, registries, tmp_path):
    srv = ferry_server
    reg = registries()
    reg.push_httpd(tmp_path)
    create_source_log_group(srv)
    register(srv, tmp_path, f"{reg.host}/httpd:2.4")
    arns = run(srv, count=2)
    tasks = [wait_status(srv, a, "RUNNING")[0] for a in arns]
    for t in tasks:
        assert serves_page(t)
    reqs = reg.ferry_requests()
    manifests = [p for m, p, _ in reqs if "/manifests/" in p]
    blobs = blob_gets(reqs)
    assert len(manifests) == 1, reqs
    assert len(blobs) >= 2 and len(set(blobs)) == len(blobs), reqs
    for a in arns:
        stop_and_wait(srv, a)


def test_a_missing_tag_or_an_unreachable_registry_fails_the_task_with_cannot_pull(ferry_server, registries, tmp_path):
    srv = ferry_server
    reg = registries()
    reg.push_httpd(tmp_path)
    create_source_log_group(srv)

    ref = f"{reg.host}/httpd:nope"
    register(srv, tmp_path, ref, family="missing")
    [arn] = run(srv, family="missing")
    t = wait_stopped(srv, arn)
    want = (f"CannotPullContainerError: pull image manifest has been retried 1 time(s): "
            f"failed to resolve ref {ref}: {ref}: not found")
    assert t["stopCode"] == "TaskFailedToStart"
    assert t["stoppedReason"] == want
    c = t["containers"][0]
    assert c["lastStatus"] == "STOPPED" and c["reason"] == want and "exitCode" not in c, c
    assert t["pullStartedAt"] <= t["pullStoppedAt"], t
    assert "startedAt" not in t
    # A 404 is an answer: asked once, not retried.
    assert [p for _, p, _ in reg.ferry_requests()] == ["/v2/httpd/manifests/nope"]

    closed = free_port()
    ref = f"127.0.0.1:{closed}/httpd:2.4"
    register(srv, tmp_path, ref, family="unreachable")
    [arn] = run(srv, family="unreachable")
    t = wait_stopped(srv, arn)
    assert t["stopCode"] == "TaskFailedToStart"
    assert t["stoppedReason"] == (
        f"CannotPullContainerError: pull image manifest has been retried 3 time(s): failed to resolve ref {ref}: "
        f"failed to do request: Get \"http://127.0.0.1:{closed}/v2/httpd/manifests/2.4\": "
        f"dial tcp 127.0.0.1:{closed}: connect: connection refused"), t["stoppedReason"]
    assert t["containers"][0]["reason"] == t["stoppedReason"]


def test_a_private_registry_is_pulled_from_with_repository_credentials(ferry_server, registries, tmp_path):
    srv = ferry_server
    password = "reg-pw-8f3a1c"
    reg = registries(user="puller", password=password)
    reg.push_httpd(tmp_path)
    create_source_log_group(srv)
    sm = srv.client("secretsmanager")
    good = sm.create_secret(Name="registry/good",
                            SecretString=json.dumps({"username": "puller", "password": password}))["ARN"]
    sm.create_secret(Name="registry/wrong", SecretString=json.dumps({"username": "puller", "password": "nope"}))
    # As AWS documents it: the execution role needs GetSecretValue on the
    # secret (AmazonECSTaskExecutionRolePolicy does not give it).
    srv.client("iam").put_role_policy(
        RoleName="ecsTaskExecutionRole", PolicyName="registry-credentials",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
             "Resource": "arn:aws:secretsmanager:*:*:secret:registry/*"}]}))
    image = f"{reg.host}/httpd:2.4"

    # Without credentials the registry says 401.
    register(srv, tmp_path, image, family="anonymous")
    [arn] = run(srv, family="anonymous")
    t = wait_stopped(srv, arn)
    assert t["stoppedReason"].startswith("CannotPullContainerError: pull image manifest has been retried")
    assert t["stoppedReason"].endswith(f"/v2/httpd/manifests/2.4: 401 Unauthorized"), t["stoppedReason"]

    # A wrong password: 401 too.
    register(srv, tmp_path, image, family="wrong", repository_credentials="registry/wrong")
    [arn] = run(srv, family="wrong")
    t = wait_stopped(srv, arn)
    assert t["stoppedReason"] == (
        f"CannotPullContainerError: pull image manifest has been retried 2 time(s): failed to resolve ref {image}: "
        f"unexpected status from GET request to http://{image.replace('/httpd:2.4', '')}/v2/httpd/manifests/2.4: "
        f"401 Unauthorized"), t["stoppedReason"]

    # The right ones (by ARN): pulled, served.
    register(srv, tmp_path, image, family="private", repository_credentials=good)
    [arn] = run(srv, family="private")
    t, _ = wait_status(srv, arn, "RUNNING")
    assert serves_page(t)
    assert any(s == 200 and "/blobs/" in p for _, p, s in reg.ferry_requests())
    stop_and_wait(srv, arn)

    # The password is in no task record, API answer or log.
    described = json.dumps(srv.aws("ecs", "describe-tasks", "--tasks", arn))
    assert password not in described
    assert password not in srv.log()
