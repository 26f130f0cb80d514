"""API replicas over one PostgreSQL store (issue 19, "API replicas" and
"Operations"), with the real AWS CLI and boto3.

One PostgreSQL cluster of the test's own (tests/e2e/pg.py) and two
`ferry server` replicas, A and B, each with its own --data-dir, port and
task network, sharing --store and --root-key. Runs with the default suite
whatever FERRY_E2E_STORE says: these tests are about PostgreSQL.

- both replicas write the same credentials file, and answer /health;
- what is written through one is read through the other at once (ECS
  clusters and task definitions; an IAM user's access key made through B
  signs calls through A, and its deletion through B is refused by A);
- a replica with another root key, or none, is refused with a clear
  message, and a store password never reaches the output;
- PostgreSQL stopped: /health is 503; started again: 200, and calls work.

No tasks run here (the replicas are started one after the other: their
tasks, KMS keys and audit trail across replicas are tested with the pieces
that share them, in the section at the end).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from conftest import SOURCE_ACCOUNT, FerryServer, ferry_bin
from pg import PgCluster

TD = {
    "family": "replicas-web",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [{"name": "web", "image": "httpd:2.4", "essential": True}],
}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def code(err):
    return err.response["Error"]["Code"]


class Fleet:
    """A PostgreSQL cluster and replicas A and B sharing it."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="ferry-e2e-replicas-")
        self.pg = PgCluster()
        self.root_key = os.path.join(self.root, "root.key")
        # Each replica has a directory of its own (data dir and log), and
        # a network of its own (FerryServer numbers them).
        self.a = self.replica("a")
        self.b = self.replica("b")

    def replica(self, name, **kw):
        os.makedirs(os.path.join(self.root, name))
        return FerryServer(os.path.join(self.root, name, "data"), pg=self.pg,
                           root_key=kw.pop("root_key", self.root_key), **kw)

    def close(self):
        rcs = [s.close() for s in (self.a, self.b) if s.proc]
        self.pg.close()
        shutil.rmtree(self.root, ignore_errors=True)
        return rcs


@pytest.fixture(scope="module")
def fleet():
    f = Fleet()
    try:
        # One after the other: A initializes the store (identity, root
        # key file, default VPC), B joins it with an empty data dir.
        f.a.start()
        f.b.start()
        yield f
    finally:
        rcs = f.close()
    assert rcs == [0, 0], f"a replica exited with {rcs} on SIGTERM"


def run_server(args, timeout=60):
    """`ferry server ARGS` expected to fail at start: (exit code, stderr)."""
    p = subprocess.run([ferry_bin(), "server", "--listen", "127.0.0.1:0", *args],
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stderr


# -- one identity ------------------------------------------------------------

def test_replicas_write_the_same_credentials_and_answer_health(fleet):
    a, b = fleet.a, fleet.b
    with open(a.credentials_file, "rb") as fa, open(b.credentials_file, "rb") as fb:
        assert fa.read() == fb.read()
    assert a.data_dir != b.data_dir
    # The root key was made by the first replica, private, and is in
    # neither data dir (nor the database: docs/fleet.md).
    assert os.stat(fleet.root_key).st_mode & 0o777 == 0o600
    assert os.path.getsize(fleet.root_key) == 32
    for srv in (a, b):
        assert not os.path.exists(os.path.join(srv.data_dir, "root.key"))
        assert not os.path.exists(os.path.join(srv.data_dir, "state.redb"))
        assert srv.aws("sts", "get-caller-identity")["Account"] == SOURCE_ACCOUNT
        status, body = srv.health()
        assert status == 200, body
        assert body["status"] == "ok" and body["store"] == "postgresql", body
        assert body["version"] and body["name"], body
        assert set(body) == {"status", "store", "name", "version"}, body
    # A made the key file and said to copy it; B found it.
    assert "created the root key" in a.log(), a.log()[-2000:]
    assert "created the root key" not in b.log(), b.log()[-2000:]
    # The administrator's secret is in the database only sealed.
    key_id, secret = a.credentials()
    rows = dump_database(fleet.pg)
    assert key_id in rows, "the identity record is not in the store"
    assert secret not in rows, "the administrator's secret is in the database in plaintext"


def dump_database(pg):
    """Every row of every user table of the database, as text, with
    binary columns (psql shows them as \\x hex) decoded as well."""
    tables = pg.psql("SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
                     "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").split()
    assert tables, "the store has no tables"
    text = "\n".join(pg.psql(f"SELECT t::text FROM {t} t") for t in tables)
    decoded = [bytes.fromhex(h).decode("utf-8", "replace")
               for h in re.findall(r"\\x((?:[0-9a-f]{2})+)", text)]
    return "\n".join([text, *decoded])


# -- a write through one is read through the other ----------------------------

def test_ecs_writes_through_a_are_read_through_b_at_once(fleet):
    a, b = fleet.a.client("ecs"), fleet.b.client("ecs")
    name = unique("shared")
    arn = a.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    got = b.describe_clusters(clusters=[name])
    assert [c["clusterArn"] for c in got["clusters"]] == [arn], got
    assert got["clusters"][0]["status"] == "ACTIVE"

    family = unique("replicas-web")
    td = dict(TD, family=family)
    r1 = a.register_task_definition(**td)["taskDefinition"]
    listed = b.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert listed == [r1["taskDefinitionArn"]]
    seen = b.describe_task_definition(taskDefinition=f"{family}:1")["taskDefinition"]
    assert seen["containerDefinitions"][0]["image"] == "httpd:2.4"
    assert seen["revision"] == 1
    # And back: a revision through B is the next one, seen through A.
    r2 = b.register_task_definition(**td)["taskDefinition"]
    assert r2["revision"] == 2
    assert a.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 2

    b.delete_cluster(cluster=name)
    gone = a.describe_clusters(clusters=[name])
    assert [c["status"] for c in gone["clusters"]] in ([], ["INACTIVE"]), gone


def test_an_access_key_made_through_b_signs_calls_through_a(fleet):
    iam_b = fleet.b.client("iam")
    user = unique("replica-user")
    iam_b.create_user(UserName=user)
    iam_b.put_user_policy(UserName=user, PolicyName="ecs-read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ecs:List*", "ecs:Describe*"], "Resource": "*"}],
    }))
    key = iam_b.create_access_key(UserName=user)["AccessKey"]
    kid, secret = key["AccessKeyId"], key["SecretAccessKey"]

    who = fleet.a.client("sts", access_key=kid, secret_key=secret).get_caller_identity()
    assert who["Arn"] == f"arn:aws:iam::{SOURCE_ACCOUNT}:user/{user}", who
    # Its policy is the one B stored: allowed to list, not to create.
    ecs_a = fleet.a.client("ecs", access_key=kid, secret_key=secret)
    assert "clusterArns" in ecs_a.list_clusters()
    with pytest.raises(Exception) as e:
        ecs_a.create_cluster(clusterName=unique("denied"))
    assert code(e.value) == "AccessDeniedException", e.value

    # Deleted through B: refused through A at once.
    iam_b.delete_access_key(UserName=user, AccessKeyId=kid)
    with pytest.raises(Exception) as e:
        fleet.a.client("sts", access_key=kid, secret_key=secret).get_caller_identity()
    assert code(e.value) == "InvalidClientTokenId", e.value


# -- refusals ----------------------------------------------------------------

def test_a_replica_with_another_root_key_is_refused_before_writing(fleet, tmp_path):
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    os.chmod(other, 0o600)
    data = tmp_path / "data"
    rc, err = run_server(["--data-dir", str(data), "--store", fleet.pg.url, "--root-key", str(other)])
    assert rc != 0
    assert "is not the root key this store was created with" in err, err
    assert str(other) in err, err
    assert not data.exists(), "a refused replica wrote its data directory"
    assert other.read_bytes() != open(fleet.root_key, "rb").read()

    # No root key file at all: refused, none made up.
    missing = tmp_path / "missing.key"
    rc, err = run_server(["--data-dir", str(data), "--store", fleet.pg.url, "--root-key", str(missing)])
    assert rc != 0 and "does not exist" in err and str(missing) in err, err
    assert not missing.exists()

    # A key file others may read is refused too.
    loose = tmp_path / "loose.key"
    shutil.copy(fleet.root_key, loose)
    os.chmod(loose, 0o644)
    rc, err = run_server(["--data-dir", str(data), "--store", fleet.pg.url, "--root-key", str(loose)])
    assert rc != 0 and "want mode 0600" in err, err


def test_store_flags_are_checked_and_passwords_never_shown(tmp_path):
    data = str(tmp_path / "data")
    rc, err = run_server(["--data-dir", data, "--store", "postgresql://postgres@%2Fnowhere/postgres"])
    assert rc != 0 and "--root-key" in err, err
    rc, err = run_server(["--data-dir", data, "--root-key", str(tmp_path / "k")])
    assert rc != 0 and "--store" in err, err
    rc, err = run_server(["--data-dir", data, "--store", "mysql://u:hunter2@h/db",
                          "--root-key", str(tmp_path / "k")])
    assert rc != 0 and "postgresql://" in err and "hunter2" not in err, err
    # A store that cannot be reached: the error names it without its password.
    url = "postgresql://postgres:hunter2@%2Fnonexistent-ferry-dir/postgres?password=swordfish"
    rc, err = run_server(["--data-dir", data, "--store", url, "--root-key", str(tmp_path / "k")])
    assert rc != 0, err
    assert "hunter2" not in err and "swordfish" not in err, err
    assert "postgresql://postgres@%2Fnonexistent-ferry-dir/postgres" in err, err
    assert not os.path.exists(data)


def test_a_password_in_the_store_url_is_warned_about_and_never_logged(fleet):
    # The test cluster trusts local connections: the password is ignored
    # by PostgreSQL, but ferry must still treat it as a secret.
    secret = "sekrit-" + uuid.uuid4().hex[:8]
    c = fleet.replica("c", extra_args=["--store", f"{fleet.pg.url}&password={secret}",
                                       "--root-key", fleet.root_key])
    try:
        c.start()
        assert c.health()[0] == 200
        assert open(c.credentials_file).read() == open(fleet.a.credentials_file).read()
    finally:
        assert c.close() == 0
    log = c.log()
    assert "carries a password" in log, log[-3000:]
    assert secret not in log, "the store password is in the server's log"
    assert "connected to the shared store" in log and "user=ferry" in log, log[-3000:]


# -- the database goes away and comes back ------------------------------------

def wait_health(srv, want, timeout=30):
    deadline = time.time() + timeout
    status = body = None
    while time.time() < deadline:
        status, body = srv.health()
        if status == want:
            return body
        time.sleep(0.25)
    pytest.fail(f"{srv.endpoint}/health stayed {status} {body}, not {want}, for {timeout}s", pytrace=False)


def test_health_follows_the_database_and_calls_recover(fleet):
    fleet.pg.stop(mode="immediate")
    try:
        for srv in (fleet.a, fleet.b):
            body = wait_health(srv, 503)
            assert body["status"] == "unavailable" and body["store"] == "postgresql", body
        # A call meanwhile is a server fault, not a hang or a crash.
        r = fleet.a.aws("ecs", "list-clusters", check=False, timeout=120)
        assert not isinstance(r, dict), r
        assert fleet.a.proc.poll() is None and fleet.b.proc.poll() is None
    finally:
        fleet.pg.start()
    for srv in (fleet.a, fleet.b):
        assert wait_health(srv, 200)["status"] == "ok"
    name = unique("after-outage")
    deadline = time.time() + 30
    while True:
        try:
            fleet.a.client("ecs").create_cluster(clusterName=name)
            break
        except Exception:
            # The first call after the outage may still meet a dropped
            # connection; a few seconds later it must work.
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    got = fleet.b.client("ecs").describe_clusters(clusters=[name])["clusters"]
    assert [c["clusterName"] for c in got] == [name]


# -- first start at once -----------------------------------------------------

def test_two_replicas_started_at_once_create_one_identity():
    """Two replicas of a new store started together: one identity, one
    credentials file content, one root key file."""
    f = Fleet()
    try:
        errors = []

        def start(s):
            try:
                s.start()
            except BaseException as e:  # pytest.fail is a BaseException
                errors.append(e)

        threads = [threading.Thread(target=start, args=(s,)) for s in (f.a, f.b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"{errors}\nA:\n{f.a.log()[-3000:]}\nB:\n{f.b.log()[-3000:]}"
        assert open(f.a.credentials_file).read() == open(f.b.credentials_file).read()
        assert f.a.aws("sts", "get-caller-identity")["Account"] == SOURCE_ACCOUNT
        assert f.b.health()[0] == 200
    finally:
        rcs = f.close()
    assert rcs == [0, 0], rcs


# -- across replicas: KMS keys, the audit trail, tasks --------------------------
# The other pieces of issue 19 add their cross-replica tests here, on the
# `fleet` fixture (A and B share one PostgreSQL store and root key):
#   - a KMS key created through A encrypts, and decrypts through B
#     (KMS state reloaded from the shared store);
#   - the audit trail holds each call exactly once, whichever replica took it;
#   - tasks: RunTask through one replica, DescribeTasks through the other
#     (the task cache reads through with a shared store), placement over
#     agents, the scheduler lease.
