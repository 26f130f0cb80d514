"""Shared fixtures for ferry's end-to-end tests.

`ferry_server` starts a real `$FERRY_BIN server` on a free 127.0.0.1 port
with a fresh data directory and yields a `FerryServer`: the endpoint, the
data dir, an environment for the real AWS CLI, `aws(...)` to run the CLI and
parse its JSON, `client(...)` for boto3 clients, and `restart()`.

Every area (KMS, ECS, logs, ...) reuses it; keep it general.

The state store: `FERRY_E2E_STORE=postgresql` makes every FerryServer keep
its state in a PostgreSQL cluster of its own (tests/e2e/pg.py: started at
the first start(), kept across restarts, removed at close()) with
`--store URL --root-key FILE`, the root key file beside the data dir;
unset (or `redb`), servers use the embedded store in their data dir, as
always. A server can also be given a cluster to share (`pg=`), as the
replicas of tests/e2e/test_replicas.py are. docs/fleet.md.
"""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

READY = re.compile(r"ferry: listening on (\S+)")
STORES = ("redb", "postgresql")


def e2e_store():
    """The store test servers use unless told otherwise (FERRY_E2E_STORE)."""
    store = os.environ.get("FERRY_E2E_STORE", "") or "redb"
    if store not in STORES:
        pytest.fail(f"FERRY_E2E_STORE={store!r}: use one of {', '.join(STORES)}", pytrace=False)
    return store
# The account the source document's task definition names (its
# executionRoleArn): test servers are created in it unless told otherwise.
SOURCE_ACCOUNT = "012345678910"
EXEC_ROLE_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Sid": "", "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
     "Action": "sts:AssumeRole"}]}
EXEC_ROLE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


def _task_network():
    """The network name and default VPC of this test process's servers.
    Under pytest-xdist (scripts/test runs the suite on several workers) each
    worker's servers get their own, disjoint from the default and from each
    other, so tasks of servers running side by side never share addresses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return "ferry0", "198.18.0.0/16"
    n = int(worker[2:])
    assert n < 12, f"too many xdist workers for the task subnets: {worker}"
    return f"ferry-{worker}", f"198.19.{n * 16}.0/21"


# TASK_SUBNET is the default VPC's CIDR (`ferry server --task-subnet`);
# each server object gets its own network name (its nftables table) from
# TASK_BRIDGE, so two servers of one worker never judge each other's tasks.
TASK_BRIDGE, TASK_SUBNET = _task_network()
_server_serial = itertools.count()


def _vpc_space():
    """Where this test process's tests put the VPCs they create (EC2
    tests): a /21 inside 198.19.0.0/16 that overlaps no worker's default
    VPC subnets. Worker N's default VPC is to become 198.19.(N*16).0/21 and
    its test VPCs live in 198.19.(N*16+8).0/21; without xdist the default
    VPC is 198.18.0.0/16 and test VPCs use 198.19.248.0/21."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return "198.19.248.0/21"
    n = int(worker[2:])
    return f"198.19.{n * 16 + 8}.0/21"


VPC_SPACE = _vpc_space()


def ferry_bin():
    path = os.environ.get("FERRY_BIN")
    if not path:
        pytest.fail("FERRY_BIN is not set: point it at target/release/ferry", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"FERRY_BIN={path} is not an executable", pytrace=False)
    return path


class AwsCliError(Exception):
    """An `aws` command that failed; `code` is the AWS error code if any."""

    def __init__(self, returncode, stderr, code, message):
        super().__init__(f"aws failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr
        self.code = code
        self.message = message


_CLI_ERROR = re.compile(r"An error occurred \(([\w.]+)\) when calling the \w+ operation(?: \(reached max retries: \d+\))?: (.*)", re.S)


def wait_ready_line(proc, log, pattern, timeout, keep=None):
    """Copies `proc`'s stdout to `log` (and to the list `keep`) on a
    thread of its own for as long as the process writes, and waits up to
    `timeout` for a line matching `pattern`: its match, or None if the
    process ended or the time ran out first."""
    ready = threading.Event()
    found = {}

    def pump():
        for line in proc.stdout:
            if keep is not None:
                keep.append(line)
            log.write(line)
            log.flush()
            m = pattern.search(line)
            if m and not ready.is_set():
                found["m"] = m
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(timeout)
    return found.get("m")


class FerryServer:
    def __init__(self, data_dir, region="us-east-1", extra_args=(), stop_tasks_on_exit=True,
                 store=None, pg=None, root_key=None, pg_dir=None, listen="127.0.0.1"):
        """`store`: "redb" or "postgresql" (default: FERRY_E2E_STORE). With
        PostgreSQL, `pg` is a pg.PgCluster to share (default: one of this
        server's own, made at the first start in `pg_dir` (default: the
        temporary directory) and removed at close()), and `root_key` the
        --root-key file (default: `root.key` beside the data dir)."""
        self.data_dir = data_dir
        # The address to listen on (a test whose agents run in network
        # namespaces of its own gives the address they reach it at).
        self.listen = listen
        self.store = store or ("postgresql" if pg else e2e_store())
        self.pg = pg
        self._own_pg = False
        self.pg_dir = pg_dir
        self.root_key = root_key or (os.path.join(os.path.dirname(data_dir), "root.key")
                                     if self.store == "postgresql" else None)
        self.region = region
        self.extra_args = list(extra_args)
        # With it (the default here, so that nothing leaks from one test to
        # the next), SIGTERM stops every task before the server exits;
        # without it, tasks outlive the server and the next start re-adopts
        # them (tests/e2e/test_restart.py). Read at each start().
        self.stop_tasks_on_exit = stop_tasks_on_exit
        # Another ferry binary for the next start (an upgrade), else FERRY_BIN.
        self.bin = None
        if "--account-id" not in self.extra_args and not os.path.exists(data_dir):
            self.extra_args += ["--account-id", SOURCE_ACCOUNT]
        self.proc = None
        self.endpoint = None
        self.log_path = os.path.join(os.path.dirname(data_dir), "server.log")
        self._log = None
        self._lines = []
        self.network_name = f"{TASK_BRIDGE}-{next(_server_serial)}"
        self._default_network = None

    # -- lifecycle -------------------------------------------------------
    def start(self, timeout=30, port=0):
        self._log = open(self.log_path, "a")
        # Where this run's log starts, and whether it drains at exit (see stop()).
        self._log_mark = self._log.tell()
        self._drains = self.stop_tasks_on_exit
        cmd = [self.bin or ferry_bin(), "server", "--data-dir", self.data_dir,
               "--listen", f"{self.listen}:{port}", "--region", self.region, *self.extra_args]
        if "--task-subnet" not in self.extra_args:
            cmd += ["--task-network", self.network_name, "--task-subnet", TASK_SUBNET]
        if self.store == "postgresql" and "--store" not in self.extra_args:
            if self.pg is None:
                from pg import PgCluster
                self.pg, self._own_pg = PgCluster(dir=self.pg_dir), True
            cmd += self.store_args()
        # The suite on another task start path (defaults: netlink, auto).
        for env, flag in (("FERRY_E2E_NETWORK_DRIVER", "--task-network-driver"),
                          ("FERRY_E2E_OCI_RUNTIME", "--oci-runtime")):
            if os.environ.get(env) and flag not in self.extra_args:
                cmd += [flag, os.environ[env]]
        if self.stop_tasks_on_exit:
            cmd.append("--stop-tasks-on-exit")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, env=self._server_env())
        m = wait_ready_line(self.proc, self._log, READY, timeout, keep=self._lines)
        if m is None:
            self.stop()
            pytest.fail(f"ferry server did not become ready; log:\n{self.log()}", pytrace=False)
        self.endpoint = f"http://{m.group(1)}"
        self._ensure_execution_role()
        return self

    def _ensure_execution_role(self):
        """Creates `ecsTaskExecutionRole` as a new AWS account's console
        does (trusting ecs-tasks.amazonaws.com, with
        AmazonECSTaskExecutionRolePolicy): the source document's task
        definition names it, and Fargate uses it to write the task's logs."""
        iam = self.client("iam")
        try:
            iam.create_role(RoleName="ecsTaskExecutionRole",
                            AssumeRolePolicyDocument=json.dumps(EXEC_ROLE_TRUST))
        except iam.exceptions.EntityAlreadyExistsException:
            return
        iam.attach_role_policy(RoleName="ecsTaskExecutionRole", PolicyArn=EXEC_ROLE_POLICY)

    def stop(self, timeout=180):
        """SIGTERM, SIGKILL after `timeout`; returns the exit code. A server
        started with --stop-tasks-on-exit must leave no task behind (it
        drains them: each container gets its stopTimeout, up to 120 s, and
        the server waits up to 150 s): one that had to be killed, or that
        says tasks were still stopping at exit, fails the test here, where
        the leak happened, instead of every later test of this worker whose
        task gets the leftover's address."""
        stopped_now = killed = False
        if self.proc and self.proc.poll() is None:
            stopped_now = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        rc = self.proc.returncode if self.proc else None
        if self._log:
            self._log.close()
            self._log = None
        if stopped_now and self._drains:
            with open(self.log_path, errors="replace") as f:
                f.seek(self._log_mark)
                left = [line.strip() for line in f if "still stopping at exit" in line]
            if killed or left:
                pytest.fail(f"the server left tasks behind at exit (killed after {timeout} s: {killed}): "
                            f"{left}; see {self.log_path}", pytrace=False)
        return rc

    def close(self):
        """Stops the server if it runs, and removes its own PostgreSQL
        cluster (if it has one; a shared one is its owner's to close).
        Returns the exit code of the stop."""
        rc = self.stop()
        if self._own_pg and self.pg is not None:
            self.pg.close()
            self.pg, self._own_pg = None, False
        return rc

    def store_args(self):
        """The flags naming this server's store, for a test that runs
        `ferry server` on the same state by hand: none on the embedded store
        (it is in the data dir); on PostgreSQL `--store URL --root-key FILE`
        (the cluster is made at the first start())."""
        if self.store != "postgresql":
            return []
        assert self.pg is not None, "the server's PostgreSQL cluster is made at its first start()"
        return ["--store", self.pg.url, "--root-key", self.root_key]

    # -- the KMS audit trail ------------------------------------------------
    def audit_lines(self):
        """The KMS audit trail as its JSON lines, oldest first, wherever the
        server keeps it: the file `DATA_DIR/kms-audit.jsonl` on the embedded
        store, the store's `kms_audit` table (one row per record, keyed by
        its zero-padded sequence number) on PostgreSQL
        (crates/kms/src/audit_store.rs)."""
        if self.store != "postgresql":
            path = os.path.join(self.data_dir, "kms-audit.jsonl")
            with open(path) as f:
                return [line for line in f.read().splitlines() if line.strip()]
        out = self.pg.psql("SELECT convert_from(value, 'UTF8') FROM ferry_records "
                           "WHERE tbl = 'kms_audit' ORDER BY key")
        # One record a line: a record is compact JSON (no raw newline).
        return [line for line in out.splitlines() if line.strip()]

    def audit_records(self):
        """The KMS audit trail's records (parsed), oldest first."""
        return [json.loads(line) for line in self.audit_lines()]

    def audit_text(self):
        """The KMS audit trail as one text, for searches through all of it."""
        return "\n".join(self.audit_lines())

    def state_dirs(self):
        """Every directory holding this server's state on disk: the data dir,
        and on PostgreSQL the cluster's directory too (its tables are files
        as much as the redb file is), for checks that nothing secret is
        at rest in plaintext."""
        dirs = [self.data_dir]
        if self.store == "postgresql" and self.pg is not None:
            dirs.append(self.pg.root)
        return dirs

    @property
    def root_key_path(self):
        """The root key file the server uses: `--root-key` with a shared
        store, else the data dir's `root.key`."""
        return self.root_key or os.path.join(self.data_dir, "root.key")

    def health(self, timeout=10):
        """GET /health (unsigned): (HTTP status, parsed JSON body)."""
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def kill(self):
        """`kill -9` of the server (no handler runs: a crash)."""
        self.proc.kill()
        self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None

    def restart(self):
        """Stops the server (SIGTERM) and starts it again on the same data
        dir and port; returns the stopped process's exit code."""
        port = int(self.endpoint.rsplit(":", 1)[1])
        rc = self.stop()
        try:
            self.start(port=port)
        except BaseException:
            # The port may have been taken meanwhile: any free one will do.
            self.start()
        return rc

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    @staticmethod
    def _server_env():
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        return env

    # -- clients ---------------------------------------------------------
    @property
    def credentials_file(self):
        return os.path.join(self.data_dir, "credentials")

    def credentials(self):
        """(access key id, secret) of the administrator, from the file."""
        key = secret = None
        section = None
        with open(self.credentials_file) as f:
            for line in f:
                line = line.strip()
                if line.startswith("["):
                    section = line
                elif section == "[default]" and "=" in line:
                    k, v = (s.strip() for s in line.split("=", 1))
                    if k == "aws_access_key_id":
                        key = v
                    elif k == "aws_secret_access_key":
                        secret = v
        return key, secret

    def env(self, **overrides):
        """Environment for the AWS CLI: this server's credentials, no config
        file, no proxies, no stray AWS_* settings."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env.update({
            "AWS_SHARED_CREDENTIALS_FILE": self.credentials_file,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "NO_PROXY": "*",
            "no_proxy": "*",
            "AWS_EC2_METADATA_DISABLED": "true",
        })
        env.update(overrides)
        return env

    def aws(self, service, operation, *args, check=True, env=None, timeout=60):
        """Runs `aws --endpoint-url E SERVICE OPERATION ARGS --output json`.
        Returns the parsed JSON ({} for no output). On failure raises
        AwsCliError (check=True) or returns it (check=False)."""
        cmd = ["aws", "--endpoint-url", self.endpoint, service, operation, *map(str, args), "--output", "json"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env or self.env(), timeout=timeout)
        if p.returncode != 0:
            m = _CLI_ERROR.search(p.stderr)
            err = AwsCliError(p.returncode, p.stderr, m.group(1) if m else None, m.group(2).strip() if m else None)
            if check:
                raise err
            return err
        out = p.stdout.strip()
        return json.loads(out) if out else {}

    # -- the default VPC -------------------------------------------------
    def default_network(self):
        """The default VPC's first default subnet and its default security
        group, looked up as a user would (`aws ec2 describe-subnets` /
        `describe-security-groups`): made-up ids fail RunTask, as on AWS."""
        if self._default_network is None:
            subnets = self.aws("ec2", "describe-subnets", "--filters",
                               "Name=default-for-az,Values=true")["Subnets"]
            assert subnets, "the server has no default subnet"
            subnet = min(subnets, key=lambda s: s["AvailabilityZone"])
            groups = self.aws("ec2", "describe-security-groups", "--filters",
                              f"Name=vpc-id,Values={subnet['VpcId']}",
                              "Name=group-name,Values=default")["SecurityGroups"]
            assert len(groups) == 1, groups
            self._default_network = (subnet["SubnetId"], groups[0]["GroupId"])
        return self._default_network

    @property
    def netcfg(self):
        """`--network-configuration` for the AWS CLI: the default subnet and group."""
        subnet, group = self.default_network()
        return f"awsvpcConfiguration={{subnets=[{subnet}],securityGroups=[{group}]}}"

    @property
    def network_configuration(self):
        """The same as a boto3 `networkConfiguration`."""
        subnet, group = self.default_network()
        return {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}

    def aws_error(self, service, operation, *args, **kw):
        """Runs an `aws` command that must fail; returns the AwsCliError."""
        r = self.aws(service, operation, *args, check=False, **kw)
        if not isinstance(r, AwsCliError):
            pytest.fail(f"aws {service} {operation} succeeded but should have failed: {r}")
        return r

    def client(self, service, access_key=None, secret_key=None, region=None, **kw):
        """A boto3 client for this server (administrator credentials unless
        given), with retries off so errors surface at once."""
        import boto3
        from botocore.config import Config

        key, secret = self.credentials()
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=region or self.region,
            aws_access_key_id=access_key or key,
            aws_secret_access_key=secret_key or secret,
            config=Config(retries={"max_attempts": 1, "mode": "standard"},
                          proxies={}, **kw),
        )


def fresh_server(extra_args=(), stop_tasks_on_exit=True):
    """A fresh `ferry server` (with `extra_args`) in a temporary data dir,
    for a fixture to yield from; stopped with SIGTERM, which it must exit
    cleanly from. Whatever `stop_tasks_on_exit` says for the test's own
    restarts, the last stop runs with --stop-tasks-on-exit (a restart
    first if needed), so no task outlives the test."""
    root = tempfile.mkdtemp(prefix="ferry-e2e-")
    srv = FerryServer(os.path.join(root, "data"), extra_args=list(extra_args),
                      stop_tasks_on_exit=stop_tasks_on_exit)
    srv.start()
    try:
        yield srv
    finally:
        if not srv.stop_tasks_on_exit and srv.proc and srv.proc.poll() is None:
            srv.stop_tasks_on_exit = True
            srv.restart()
        elif srv.proc and srv.proc.poll() is not None:
            # The test killed it: a last start re-adopts or releases what is left.
            srv.stop_tasks_on_exit = True
            srv.start()
        rc = srv.close()
        shutil.rmtree(root, ignore_errors=True)
    assert rc == 0, f"ferry server exited with {rc} on SIGTERM"


@pytest.fixture
def ferry_server():
    """A fresh `ferry server` per test, stopped (SIGTERM) afterwards."""
    yield from fresh_server()


@pytest.fixture(scope="module")
def ferry_server_module():
    """One `ferry server` shared by a test module (faster; tests must not
    depend on each other's state)."""
    root = tempfile.mkdtemp(prefix="ferry-e2e-")
    srv = FerryServer(os.path.join(root, "data"))
    srv.start()
    try:
        yield srv
    finally:
        srv.close()
        shutil.rmtree(root, ignore_errors=True)


# -- tasks -------------------------------------------------------------------
# Helpers for tests that run tasks: the source document's task definition,
# the stand-in httpd:2.4 image, and waiting on task states.

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_TD = os.path.join(ROOT, "examples", "fargate-task-definition.json")
# The source task definition's awslogs group: as on Fargate, it must exist
# before a task can start (the definition has no awslogs-create-group).
SOURCE_LOG_GROUP = "/ecs/fargate-task-definition"


def create_source_log_group(srv):
    """Creates the source task definition's log group, as its user would."""
    srv.aws("logs", "create-log-group", "--log-group-name", SOURCE_LOG_GROUP)
MAKE_IMAGE = os.path.join(ROOT, "tests", "tools", "make_httpd_image.py")


def import_httpd(srv, tmp_path, fmt="oci", name="httpd:2.4", extra=()):
    """Builds the busybox stand-in for httpd:2.4 (`extra`: more
    make_httpd_image.py options, e.g. --with-fio) and imports it with
    `ferry image import` into the server's data dir."""
    archive = tmp_path / f"httpd-{fmt}.tar"
    subprocess.run(["python3", MAKE_IMAGE, *extra, "--format", fmt, "--name", name, str(archive)], check=True)
    p = subprocess.run([ferry_bin(), "image", "import", str(archive), "--name", name,
                        "--data-dir", srv.data_dir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"ferry image import failed: {p.stderr}"


def wait_stopped(srv, arn, timeout=120):
    """Polls DescribeTasks until the task is STOPPED; returns it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
        if t["lastStatus"] == "STOPPED":
            return t
        time.sleep(0.25)
    pytest.fail(f"task {arn} did not stop in {timeout}s", pytrace=False)


def wait_status(srv, arn, status, cluster="default", timeout=120):
    """Polls DescribeTasks until the task's lastStatus is `status`; returns
    (task, statuses seen). Fails if it stops first or takes too long."""
    deadline = time.time() + timeout
    seen = []
    t = None
    while time.time() < deadline:
        t = srv.aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn)["tasks"][0]
        if not seen or seen[-1] != t["lastStatus"]:
            seen.append(t["lastStatus"])
        if t["lastStatus"] == status:
            return t, seen
        if t["lastStatus"] == "STOPPED":
            pytest.fail(f"task stopped before {status}: {t.get('stopCode')}: {t.get('stoppedReason')}\n"
                        f"{srv.log()[-3000:]}", pytrace=False)
        time.sleep(0.25)
    pytest.fail(f"task did not reach {status} in {timeout}s (statuses seen: {seen}); last: {t}", pytrace=False)


def private_ip(task):
    """The task's ENI address."""
    for att in task.get("attachments", []):
        if att.get("type") == "ElasticNetworkInterface":
            for d in att.get("details", []):
                if d["name"] == "privateIPv4Address":
                    return d["value"]
    pytest.fail(f"task has no ENI address: {task.get('attachments')}", pytrace=False)


def task_page(ip, path="/", timeout=20):
    """GET http://IP/PATH from the host. A task is RUNNING once its
    containers' processes run, not once they listen (as on ECS): an httpd
    still starting refuses connections for a moment, more so on a loaded
    machine, so refused connections are retried until `timeout`."""
    import urllib.error
    import urllib.request
    deadline = time.time() + timeout
    while True:
        try:
            return urllib.request.urlopen(f"http://{ip}{path}", timeout=10).read().decode()
        except urllib.error.URLError as e:
            refused = isinstance(e.reason, ConnectionRefusedError)
            if not refused or time.time() > deadline:
                raise
            time.sleep(0.2)


def pids_with_args(*args):
    """Pids of the processes whose argv holds every one of `args` (str or
    bytes), read from /proc."""
    want = [a.encode() if isinstance(a, str) else a for a in args]
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if all(w in argv for w in want):
            pids.append(int(d))
    return pids


def host_resources():
    """Everything a leaked task would show on the host, as one string:
    mounts, loop devices, network namespaces, links, NAT rules, cgroups."""
    out = [open("/proc/self/mountinfo").read()]
    for cmd in (["losetup", "-a"], ["ip", "netns", "list"], ["ip", "-o", "link"], ["iptables", "-t", "nat", "-S"]):
        out.append(subprocess.run(cmd, capture_output=True, text=True).stdout)
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        out.extend(os.path.join(root, d) for d in dirs if "ferry" in root or d == "ferry")
        if root.count("/") > 5:
            dirs[:] = []
    return "\n".join(out)


def allocated_data(path, chunk=16 << 20):
    """Yields the allocated regions of a (sparse) file in chunks, skipping
    holes with SEEK_DATA/SEEK_HOLE, so scanning a 20 GiB volume for
    plaintext reads only what was written. Chunks overlap by 4 KiB so a
    needle spanning a boundary is still found."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after off
                return
            end = os.lseek(fd, start, os.SEEK_HOLE)
            pos = start
            while pos < end:
                n = min(chunk, end - pos)
                yield os.pread(fd, n + 4096 if pos + n < end else n, pos)
                pos += n
            off = end
    finally:
        os.close(fd)


def files_on_disk(root):
    """Every regular file under `root` (what is on the disk: not sockets
    such as the admin socket), not crossing mount points (a running task's
    rootfs is mounted from its encrypted volume: its decrypted view is not
    the disk)."""
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not os.path.ismount(os.path.join(d, x))]
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                yield p


def state_files(srv):
    """files_on_disk() of every directory holding the server's state
    (FerryServer.state_dirs: the data dir, and with PostgreSQL the
    cluster's files), for checks that nothing is at rest in plaintext."""
    for root in srv.state_dirs():
        yield from files_on_disk(root)
