//! A throwaway PostgreSQL cluster for tests (feature `testing`).
//!
//! [`TempPostgres::new`] makes a temporary directory owned by the
//! `postgres` user, runs `initdb` and `pg_ctl start` there as that user
//! (initdb refuses root), with the server listening only on a Unix socket
//! in that directory (`listen_addresses = ''`: nothing on the network, and
//! the directory's mode 0700 keeps other users out), creates the database
//! `ferry` and hands out its URL. Dropping it stops the server
//! (`pg_ctl stop -m immediate`) and removes the directory. docs/store.md
//! lists the same steps for the Python end-to-end fixture.
//!
//! It needs root (to act as `postgres`) and PostgreSQL's server binaries
//! (`scripts/setup` installs `postgresql-15`); without either it panics
//! saying so, rather than letting a test pass without a database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian's PostgreSQL 15 keeps its server binaries; `FERRY_PG_BIN`
/// overrides it.
const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The database user and database a cluster is made with.
const USER: &str = "ferry";
const DATABASE: &str = "ferry";

/// A running PostgreSQL cluster in a temporary directory; stopped and
/// removed on drop.
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    running: bool,
}

impl std::fmt::Debug for TempPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempPostgres")
            .field("dir", &self.dir.path())
            .field("running", &self.running)
            .finish()
    }
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("TempPostgres: running {what}: {e} (run scripts/setup)"));
    if !out.status.success() {
        panic!(
            "TempPostgres: {what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TempPostgres {
    /// Initializes and starts a cluster, and creates the database `ferry`.
    ///
    /// # Panics
    /// Not root, PostgreSQL's binaries missing (`scripts/setup` installs
    /// them), or the cluster failing to start (its log is in the message).
    pub fn new() -> Self {
        let bin = std::env::var_os("FERRY_PG_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
        for tool in ["initdb", "pg_ctl", "createdb"] {
            if !bin.join(tool).is_file() {
                panic!(
                    "TempPostgres: {} is missing: the tests need PostgreSQL's server binaries \
                     (run scripts/setup, which installs postgresql-15; FERRY_PG_BIN names \
                     another directory)",
                    bin.join(tool).display()
                );
            }
        }
        let uid = run("id -u", Command::new("id").arg("-u"));
        if uid.trim() != "0" {
            panic!(
                "TempPostgres: the PostgreSQL tests run as root (they run initdb and the server \
                 as the postgres user through runuser); run them as root after scripts/setup"
            );
        }
        let pg_uid: u32 = run(
            "id -u postgres",
            Command::new("id").args(["-u", "postgres"]),
        )
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("TempPostgres: the postgres user's uid: {e}"));
        let pg_gid: u32 = run(
            "id -g postgres",
            Command::new("id").args(["-g", "postgres"]),
        )
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("TempPostgres: the postgres user's gid: {e}"));
        // Under /tmp: the postgres user can reach it, and the socket's path
        // stays under the 107 bytes a Unix socket name may have.
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("TempPostgres: a directory under /tmp: {e}"));
        std::os::unix::fs::chown(dir.path(), Some(pg_uid), Some(pg_gid))
            .unwrap_or_else(|e| panic!("TempPostgres: chown {}: {e}", dir.path().display()));
        let mut pg = Self {
            dir,
            bin,
            running: false,
        };
        let data = pg.data_dir();
        run(
            "initdb",
            pg.as_postgres("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    USER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data),
        );
        // Only the socket in our directory; fsync off because a test
        // cluster's data need not survive a power cut (a stopped server's
        // does: the writes are in the page cache).
        let conf = format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n\
             full_page_writes = off\nmax_connections = 40\nshared_buffers = 16MB\n",
            pg.dir.path().display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .unwrap_or_else(|e| panic!("TempPostgres: reading {}: {e}", conf_path.display()));
        text.push_str(&conf);
        std::fs::write(&conf_path, text)
            .unwrap_or_else(|e| panic!("TempPostgres: writing {}: {e}", conf_path.display()));
        pg.start();
        pg.create_database(DATABASE);
        pg
    }

    /// `cmd` from PostgreSQL's binaries, run as the `postgres` user.
    fn as_postgres(&self, tool: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .current_dir(self.dir.path());
        c
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the server's socket (and the cluster).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of the database `ferry`.
    pub fn url(&self) -> String {
        self.database_url(DATABASE)
    }

    /// The URL of the database `name` on this cluster.
    pub fn database_url(&self, name: &str) -> String {
        format!(
            "postgresql:///{name}?host={}&user={USER}",
            self.dir.path().display()
        )
    }

    /// Creates the database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        run(
            "createdb",
            Command::new(self.bin.join("createdb"))
                .arg("-h")
                .arg(self.dir.path())
                .args(["-U", USER, name]),
        );
        self.database_url(name)
    }

    /// Starts the server (again, after [`TempPostgres::stop`]); waits until
    /// it accepts connections.
    pub fn start(&mut self) {
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let out = self
            .as_postgres("pg_ctl")
            .args(["start", "-w", "-t", "60", "-s", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("TempPostgres: running pg_ctl: {e} (run scripts/setup)"));
        if !out.status.success() {
            panic!(
                "TempPostgres: pg_ctl start failed ({}): {}{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        self.running = true;
    }

    /// Stops the server at once (`-m immediate`: like a crash; what was
    /// committed is recovered at the next start).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        run(
            "pg_ctl stop",
            self.as_postgres("pg_ctl")
                .args(["stop", "-w", "-s", "-m", "immediate", "-D"])
                .arg(&data),
        );
        self.running = false;
    }
}

impl Default for TempPostgres {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.running {
            // Not `stop`: a panic while already panicking would abort.
            let _ = self
                .as_postgres("pg_ctl")
                .args(["stop", "-w", "-s", "-m", "immediate", "-D"])
                .arg(self.data_dir())
                .stdin(Stdio::null())
                .output();
            self.running = false;
        }
    }
}
