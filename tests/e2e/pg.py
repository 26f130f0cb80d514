"""A throwaway PostgreSQL cluster for end-to-end tests.

`PgCluster()` runs `initdb` in a fresh temporary directory owned by the
`postgres` user (initdb refuses root; every PostgreSQL command runs through
`runuser -u postgres --`), listening on a Unix socket in that directory
only (no TCP port: clusters of tests running side by side never collide;
the directory's mode 0700 lets only root and postgres in, so `trust`
authentication admits nobody else), with the superuser and database
`ferry`. The steps are docs/store.md's ("Tests and a cluster of your own"). `start()`/`stop()` may be called any number of
times (a test stops PostgreSQL under a running ferry); `close()` stops it
with `pg_ctl stop -m immediate` and removes the directory. The Debian
`main` cluster is never touched.

The binaries come from `FERRY_PG_BIN` if set, else the newest
/usr/lib/postgresql/*/bin (scripts/setup installs PostgreSQL 15). A missing
prerequisite fails the test with a clear message, never skips it.

For speed the cluster runs with fsync off (synchronous_commit stays on, so
a commit survives `pg_ctl stop -m immediate`): it stands for a database,
not for its durability across power cuts, which these tests do not measure.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import weakref

import pytest

# The cluster's superuser and the database ferry uses (docs/store.md).
USER = "ferry"
DATABASE = "ferry"


def pg_bin():
    """The directory of initdb, pg_ctl and psql."""
    env = os.environ.get("FERRY_PG_BIN")
    if env:
        candidates = [env]
    else:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                            key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    for d in reversed(candidates):
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "createdb", "psql")):
            return d
    pytest.fail("PostgreSQL is not installed (no initdb/pg_ctl/createdb/psql in "
                f"{env or '/usr/lib/postgresql/*/bin'}): run scripts/setup, or set FERRY_PG_BIN",
                pytrace=False)


def _check_user():
    if os.geteuid() != 0:
        pytest.fail("the PostgreSQL test cluster needs root (it runs initdb as `postgres` through runuser)",
                    pytrace=False)
    try:
        import pwd
        return pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("there is no `postgres` user to run the test cluster as: install PostgreSQL "
                    "(scripts/setup)", pytrace=False)


def _as_postgres(argv, cwd="/", **kw):
    # The working directory must be one postgres may enter.
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv],
                          capture_output=True, text=True, cwd=cwd, **kw)


def _destroy(root, pg_ctl, data):
    """Stops the cluster at once (if it runs) and removes its directory.
    A module-level function so the finalizer holds no reference to the
    cluster object."""
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        _as_postgres([pg_ctl, "-D", data, "stop", "-m", "immediate", "-w", "-t", "30"], timeout=60)
    shutil.rmtree(root, ignore_errors=True)


class PgCluster:
    """One PostgreSQL cluster in a temporary directory, Unix socket only."""

    def __init__(self, start=True, dir=None):
        """`dir`: where the cluster's directory is made (default: the
        system's temporary directory); postgres must be able to enter it."""
        user = _check_user()
        self.bin = pg_bin()
        self.root = tempfile.mkdtemp(prefix="ferry-pg-", dir=dir)
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "postgres.log")
        self.socket_dir = self.root
        self.port = 5432  # only names the socket file: no TCP listener
        # Removed at close(), at garbage collection, or at interpreter exit,
        # whichever comes first: no cluster outlives the test run.
        self._finalizer = weakref.finalize(self, _destroy, self.root, self._tool("pg_ctl"), self.data)
        p = _as_postgres([self._tool("initdb"), "-D", self.data, "-U", USER, "-A", "trust",
                          "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
        if p.returncode != 0:
            self.close()
            pytest.fail(f"initdb failed ({p.returncode}): {p.stderr.strip()}", pytrace=False)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# ferry e2e: Unix socket only, in the cluster's own directory\n"
                    "listen_addresses = ''\n"
                    f"unix_socket_directories = '{self.socket_dir}'\n"
                    f"port = {self.port}\n"
                    "fsync = off\n"
                    "full_page_writes = off\n"
                    # Many clusters may run at once (one per test server).
                    "max_connections = 40\n"
                    "shared_buffers = 16MB\n")
        self.start()
        p = subprocess.run([self._tool("createdb"), "-h", self.socket_dir, "-p", str(self.port), "-U", USER,
                            DATABASE], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            self.close()
            pytest.fail(f"createdb failed ({p.returncode}): {p.stderr.strip()}", pytrace=False)
        if not start:
            self.stop()

    def _tool(self, name):
        return os.path.join(self.bin, name)

    @property
    def url(self):
        """The store URL ferry connects with: user and database `ferry`,
        over the socket. No password: the cluster trusts local connections."""
        return f"postgresql:///{DATABASE}?host={self.socket_dir}&port={self.port}&user={USER}"

    @property
    def running(self):
        return _as_postgres([self._tool("pg_ctl"), "-D", self.data, "status"], timeout=30).returncode == 0

    def start(self, timeout=60):
        p = _as_postgres([self._tool("pg_ctl"), "-D", self.data, "-l", self.log_path, "-w",
                          "-t", str(timeout), "start"], timeout=timeout + 30)
        if p.returncode != 0:
            pytest.fail(f"starting PostgreSQL failed ({p.returncode}): {p.stderr.strip()}\n{self.log()}",
                        pytrace=False)
        return self

    def stop(self, mode="fast", timeout=60):
        """Stops the cluster (`fast`: disconnects clients, clean shutdown;
        `immediate`: as a crash)."""
        p = _as_postgres([self._tool("pg_ctl"), "-D", self.data, "-m", mode, "-w",
                          "-t", str(timeout), "stop"], timeout=timeout + 30)
        if p.returncode != 0:
            pytest.fail(f"stopping PostgreSQL failed ({p.returncode}): {p.stderr.strip()}", pytrace=False)

    def psql(self, sql, db=DATABASE):
        """Runs `sql` with psql over the socket; returns its unaligned,
        tuples-only output."""
        p = subprocess.run([self._tool("psql"), "-h", self.socket_dir, "-p", str(self.port), "-U", USER,
                            "-d", db, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            pytest.fail(f"psql failed ({p.returncode}): {p.stderr.strip()}", pytrace=False)
        return p.stdout.strip()

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        """`pg_ctl stop -m immediate` and the directory removed."""
        self._finalizer()
