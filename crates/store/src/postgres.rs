//! The shared backend: PostgreSQL, written by every replica of a fleet.
//!
//! The store's API is synchronous and is called from plain threads and from
//! the server's tokio workers alike, where the sync `postgres` crate and
//! `Handle::block_on` would panic. So the store owns a small tokio runtime
//! of its own (two threads) that drives tokio-postgres connections; a sync
//! call spawns its query there and waits on a std channel for the answer.
//!
//! Writers are serialized across all processes by one transaction-scoped
//! advisory lock (see [`WRITE_LOCK`] and docs/store.md): the embedded
//! store's single-writer semantics, so a read-modify-write inside one
//! [`Store::write`](crate::Store::write) closure never loses an update.
//! Within a process writers first queue on a mutex, so at most one pooled
//! connection per process waits for that lock and the rest stay free for
//! readers.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::{Lease, LeaseInfo, Result, StoreError, TxnInner, WriteTxn};

/// The advisory lock every write transaction takes (`pg_advisory_xact_lock`):
/// "ferry-wr" in ASCII. Fixed, so every ferry process on a database agrees.
const WRITE_LOCK: i64 = 0x6665_7272_792d_7772;
/// The session advisory lock held while migrating: "ferry-mg".
const MIGRATE_LOCK: i64 = 0x6665_7272_792d_6d67;
/// Connections per store: one writer at a time per process, the rest for
/// concurrent readers.
const MAX_CONNECTIONS: usize = 4;
/// How long one call may take (waiting for a connection, the write lock,
/// or an answer) before it fails and its connection is dropped.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest lease, so `ttl` never overflows an interval.
const MAX_LEASE_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// The schema, as migrations applied in order at connect. Append only:
/// a released migration is never edited (a database records which ran).
/// Keys are `COLLATE "C"`, so their order is byte order, as in redb.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE ferry_records (
    tbl   text COLLATE "C" NOT NULL,
    key   text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tbl, key)
);
CREATE TABLE ferry_table_versions (
    tbl     text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL
);
CREATE TABLE ferry_leases (
    name       text COLLATE "C" PRIMARY KEY,
    holder     text NOT NULL,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
"#,
)];

/// The newest schema version this binary has.
fn known_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

const GET: &str = "SELECT value FROM ferry_records WHERE tbl = $1 AND key = $2";
const PUT: &str = "INSERT INTO ferry_records (tbl, key, value) VALUES ($1, $2, $3) \
                   ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE: &str = "DELETE FROM ferry_records WHERE tbl = $1 AND key = $2 RETURNING 1";
const BUMP: &str = "INSERT INTO ferry_table_versions (tbl, version) \
                    SELECT t, 1 FROM unnest($1::text[]) AS t \
                    ON CONFLICT (tbl) DO UPDATE SET version = ferry_table_versions.version + 1";
const VERSIONS: &str = "SELECT tbl, version FROM ferry_table_versions WHERE tbl = ANY($1::text[])";
/// Takes or renews a lease in one statement, on the database's clock
/// (`clock_timestamp()`: `now()` is the transaction's start, which may be
/// long before the write lock was granted). No row back: someone else
/// holds it, unexpired.
const LEASE: &str = "INSERT INTO ferry_leases (name, holder, epoch, expires_at) \
     VALUES ($1, $2, 1, clock_timestamp() + $3::bigint * interval '1 millisecond') \
     ON CONFLICT (name) DO UPDATE SET \
       epoch = CASE WHEN ferry_leases.holder = EXCLUDED.holder \
               THEN ferry_leases.epoch ELSE ferry_leases.epoch + 1 END, \
       holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
     WHERE ferry_leases.holder = EXCLUDED.holder OR ferry_leases.expires_at <= clock_timestamp() \
     RETURNING epoch";
const RELEASE: &str = "UPDATE ferry_leases SET expires_at = to_timestamp(0) \
                       WHERE name = $1 AND holder = $2";
const LEASES: &str = "SELECT name, holder, epoch, expires_at > clock_timestamp() \
                      FROM ferry_leases WHERE starts_with(name, $1) ORDER BY name";
const HOLDS: &str = "SELECT 1 FROM ferry_leases WHERE name = $1 AND holder = $2 AND epoch = $3 \
                     AND expires_at > clock_timestamp()";

/// An owned query parameter (it travels to the store's runtime).
type Param = Box<dyn ToSql + Send + Sync>;

/// What went wrong on the runtime side, before it is named for the caller.
enum CallError {
    Pg(tokio_postgres::Error),
    Timeout,
    /// The store's runtime is gone (the store is being dropped).
    Stopped,
}

impl From<tokio_postgres::Error> for CallError {
    fn from(e: tokio_postgres::Error) -> Self {
        CallError::Pg(e)
    }
}

/// One connection and its prepared statements (prepared on first use:
/// one round trip per query afterwards instead of two).
struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    async fn statement(&self, sql: &str) -> std::result::Result<Statement, tokio_postgres::Error> {
        let cached = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sql)
            .cloned();
        if let Some(s) = cached {
            return Ok(s);
        }
        let s = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Arc<Conn>>,
    /// Connections open (idle or checked out).
    open: usize,
}

/// The PostgreSQL store.
pub(crate) struct PgStore {
    /// `Some` until drop, which shuts it down without blocking (dropping a
    /// runtime blocks, and panics inside another runtime's worker).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    config: Config,
    /// The database, for messages: the URL without its password.
    target: String,
    pool: Mutex<PoolState>,
    returned: Condvar,
    /// Writers of this process queue here before taking a connection.
    writer: Mutex<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A connection checked out of the pool; back into it on drop, unless it
/// broke or was left inside a transaction (then it is closed, which rolls
/// the transaction back, and the next call opens a new one).
struct Pooled<'a> {
    store: &'a PgStore,
    conn: Arc<Conn>,
    broken: AtomicBool,
    in_txn: AtomicBool,
}

impl Pooled<'_> {
    fn set_broken(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }

    fn set_in_txn(&self, in_txn: bool) {
        self.in_txn.store(in_txn, Ordering::SeqCst);
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let keep = !self.broken.load(Ordering::SeqCst)
            && !self.in_txn.load(Ordering::SeqCst)
            && !self.conn.client.is_closed();
        let mut pool = self
            .store
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if keep {
            pool.idle.push(self.conn.clone());
        } else {
            pool.open = pool.open.saturating_sub(1);
        }
        drop(pool);
        self.store.returned.notify_one();
    }
}

/// The smallest string greater than every string that starts with
/// `prefix` (`None`: no such string, every key from `prefix` on matches).
/// UTF-8's byte order is code point order, so this is the next code point
/// after the last one that has a next.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match u32::from(c) + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// PostgreSQL's text cannot hold NUL; no stored key or table has one.
fn has_nul(parts: &[&str]) -> bool {
    parts.iter().any(|p| p.contains('\0'))
}

fn nul_refused() -> StoreError {
    StoreError::Database {
        detail: "table names and keys cannot contain NUL in the PostgreSQL store".into(),
    }
}

/// `url` without its password, for messages.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or("");
    if config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)))
        && !hosts.is_empty()
    {
        return format!("postgresql://{user}@/{db}?host={}", hosts.join(","));
    }
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgresql://{user}@{}{}/{db}",
        hosts.join(","),
        if ports.is_empty() {
            String::new()
        } else {
            format!(":{}", ports.join(","))
        }
    )
}

/// The message of a tokio-postgres error and its causes. A server error is
/// its message and SQLSTATE only: its DETAIL may quote the row.
fn pg_detail(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// SQLSTATE classes that mean the server is going away or not there yet:
/// connection exceptions (08), operator intervention (57: shutdown,
/// starting up), insufficient resources (53: too many connections), but
/// not a full disk ([`db_disk_full`]): the server is there and answers
/// reads.
fn db_unavailable(e: &tokio_postgres::error::DbError) -> bool {
    let c = e.code().code();
    (c.starts_with("08") || c.starts_with("57") || c.starts_with("53")) && !db_disk_full(e)
}

/// SQLSTATE 53100 `disk_full`: the database could not extend a file
/// (ENOSPC). A statement error like any other: the connection stays good.
fn db_disk_full(e: &tokio_postgres::error::DbError) -> bool {
    *e.code() == tokio_postgres::error::SqlState::DISK_FULL
}

impl PgStore {
    /// Connects, migrates and returns the store (see [`crate::Store::connect`]).
    pub(crate) fn connect(url: &str) -> Result<Self> {
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(StoreError::BadUrl(
                "a shared store is postgresql://user[:password]@host[:port]/db or \
                 postgresql:///db?host=/socket/dir"
                    .into(),
            ));
        }
        // The parse error names the bad option, never its value.
        let mut config = Config::from_str(url).map_err(|e| {
            StoreError::BadUrl(format!(
                "{} (the URL is not shown: it may hold a password)",
                pg_detail(&e)
            ))
        })?;
        config
            .application_name("ferry")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives_idle(Duration::from_secs(30));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-store-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database {
                detail: format!("starting the store's runtime: {e}"),
            })?;
        let store = Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            target: describe(&config),
            config,
            pool: Mutex::default(),
            returned: Condvar::new(),
            writer: Mutex::new(()),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Runs `fut` on the store's runtime and waits for it, at most
    /// [`CALL_TIMEOUT`].
    fn run<R: Send + 'static>(
        &self,
        fut: impl Future<Output = std::result::Result<R, CallError>> + Send + 'static,
    ) -> std::result::Result<R, CallError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let r = tokio::time::timeout(CALL_TIMEOUT, fut)
                .await
                .unwrap_or(Err(CallError::Timeout));
            // The caller waits until it gets this; nothing to do if not.
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or(Err(CallError::Stopped))
    }

    /// Names a failure for the caller, and marks `conn` broken unless the
    /// server answered (a server error leaves the connection usable).
    fn fail(&self, conn: Option<&Pooled<'_>>, e: CallError) -> StoreError {
        let unavailable = |detail: String| StoreError::Unavailable {
            target: self.target.clone(),
            detail,
        };
        let (broken, err) = match e {
            CallError::Pg(e) => match e.as_db_error() {
                Some(db) if db_unavailable(db) => (true, unavailable(pg_detail(&e))),
                Some(db) if db_disk_full(db) => (
                    false,
                    StoreError::DatabaseFull {
                        target: self.target.clone(),
                        detail: pg_detail(&e),
                    },
                ),
                Some(_) => (
                    false,
                    StoreError::Database {
                        detail: pg_detail(&e),
                    },
                ),
                None => (true, unavailable(pg_detail(&e))),
            },
            CallError::Timeout => (
                true,
                unavailable(format!("no answer within {} s", CALL_TIMEOUT.as_secs())),
            ),
            CallError::Stopped => (true, unavailable("the store is shutting down".into())),
        };
        if let Some(c) = conn
            && broken
        {
            c.set_broken();
        }
        err
    }

    /// A connection from the pool: an idle one, else a new one while fewer
    /// than [`MAX_CONNECTIONS`] are open, else the next one returned.
    /// Connections the server closed (a restart) are dropped here, so the
    /// store reconnects by itself.
    fn checkout(&self) -> Result<Pooled<'_>> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            while let Some(conn) = pool.idle.pop() {
                if conn.client.is_closed() {
                    pool.open = pool.open.saturating_sub(1);
                    continue;
                }
                return Ok(self.pooled(conn));
            }
            if pool.open < MAX_CONNECTIONS {
                pool.open += 1;
                drop(pool);
                return match self.open_connection() {
                    Ok(conn) => Ok(self.pooled(Arc::new(conn))),
                    Err(e) => {
                        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
                        pool.open = pool.open.saturating_sub(1);
                        drop(pool);
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable {
                    target: self.target.clone(),
                    detail: format!(
                        "all {MAX_CONNECTIONS} connections stayed busy for {} s",
                        CALL_TIMEOUT.as_secs()
                    ),
                });
            }
            pool = self
                .returned
                .wait_timeout(pool, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn pooled(&self, conn: Arc<Conn>) -> Pooled<'_> {
        Pooled {
            store: self,
            conn,
            broken: AtomicBool::new(false),
            in_txn: AtomicBool::new(false),
        }
    }

    fn open_connection(&self) -> Result<Conn> {
        let config = self.config.clone();
        let handle = self.handle.clone();
        let client = self
            .run(async move {
                let (client, connection) = config.connect(NoTls).await?;
                // The connection's I/O runs as its own task until the
                // server or the client closes it; the client then reports
                // `is_closed`, and the pool drops it.
                handle.spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            })
            .map_err(|e| self.fail(None, e))?;
        Ok(Conn {
            client,
            statements: Mutex::default(),
        })
    }

    /// One prepared statement on `conn`.
    fn query(
        &self,
        conn: &Pooled<'_>,
        sql: impl Into<Cow<'static, str>>,
        params: Vec<Param>,
    ) -> Result<Vec<Row>> {
        let c = conn.conn.clone();
        let sql = sql.into();
        self.run(async move {
            let st = c.statement(&sql).await?;
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            Ok(c.client.query(&st, &refs).await?)
        })
        .map_err(|e| self.fail(Some(conn), e))
    }

    /// Statements without parameters, in one round trip (simple protocol).
    fn batch(&self, conn: &Pooled<'_>, sql: impl Into<Cow<'static, str>>) -> Result<()> {
        let c = conn.conn.clone();
        let sql = sql.into();
        self.run(async move { Ok(c.client.batch_execute(&sql).await?) })
            .map_err(|e| self.fail(Some(conn), e))
    }

    /// A query outside any transaction.
    fn read(&self, sql: &'static str, params: Vec<Param>) -> Result<Vec<Row>> {
        let conn = self.checkout()?;
        self.query(&conn, sql, params)
    }

    /// Applies the migrations this database lacks, under a session advisory
    /// lock so replicas starting together take turns; refuses a database
    /// newer than this binary.
    fn migrate(&self) -> Result<()> {
        let conn = self.checkout()?;
        // Any failure below drops the connection (and so the lock, and any
        // half-run migration transaction with it).
        conn.set_in_txn(true);
        self.batch(&conn, format!("SELECT pg_advisory_lock({MIGRATE_LOCK})"))?;
        self.batch(
            &conn,
            "CREATE TABLE IF NOT EXISTS ferry_schema_migrations (\
               version integer PRIMARY KEY, \
               applied_at timestamptz NOT NULL DEFAULT now())",
        )?;
        let rows = self.query(
            &conn,
            "SELECT coalesce(max(version), 0) FROM ferry_schema_migrations",
            Vec::new(),
        )?;
        let current: i32 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.fail(Some(&conn), e.into()))?
            .unwrap_or(0);
        if current > known_version() {
            return Err(StoreError::SchemaTooNew {
                target: self.target.clone(),
                found: current.into(),
                known: known_version().into(),
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            self.batch(
                &conn,
                format!(
                    "BEGIN; {sql}; \
                     INSERT INTO ferry_schema_migrations (version) VALUES ({version}); COMMIT"
                ),
            )?;
        }
        self.batch(&conn, format!("SELECT pg_advisory_unlock({MIGRATE_LOCK})"))?;
        conn.set_in_txn(false);
        Ok(())
    }

    pub(crate) fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        if has_nul(&[table, key]) {
            return Ok(None);
        }
        let conn = self.checkout()?;
        get_on(self, &conn, table, key)
    }

    pub(crate) fn scan(&self, table: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.scan_page(table, prefix, None, usize::MAX, false)
    }

    pub(crate) fn scan_page(
        &self,
        table: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        if has_nul(&[table, prefix]) {
            return Ok(Vec::new());
        }
        let conn = self.checkout()?;
        range_on(self, &conn, table, prefix, after, limit, reverse)
    }

    /// See [`crate::Store::write`]: BEGIN, the write lock, the closure,
    /// the version bumps, COMMIT.
    pub(crate) fn write<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let _one = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = self.checkout()?;
        conn.set_in_txn(true);
        self.batch(
            &conn,
            format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"),
        )?;
        let mut w = WriteTxn {
            inner: TxnInner::Postgres(PgTxn {
                store: self,
                conn: &conn,
                touched: BTreeSet::new(),
                failed: Mutex::new(None),
            }),
        };
        let r = f(&mut w);
        let (touched, failed) = match w.inner {
            TxnInner::Postgres(t) => (
                t.touched,
                t.failed
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
            TxnInner::Redb(_) => (BTreeSet::new(), None),
        };
        let v = match r {
            Ok(v) => v,
            Err(e) => {
                self.rollback(&conn);
                return Err(e);
            }
        };
        // PostgreSQL aborts a transaction at its first failed statement and
        // COMMIT then quietly rolls back: a closure that swallowed a store
        // error must not be told its writes were committed.
        if let Some(detail) = failed {
            self.rollback(&conn);
            return Err(StoreError::Database {
                detail: format!(
                    "a statement of this transaction failed ({detail}); nothing was committed"
                ),
            }
            .into());
        }
        self.commit(&conn, touched.into_iter().collect())?;
        conn.set_in_txn(false);
        Ok(v)
    }

    /// Bumps the versions of the tables written and commits, pipelined in
    /// one round trip: if the bump fails, PostgreSQL turns the COMMIT
    /// behind it into a rollback, and the bump's error is what we report.
    fn commit(&self, conn: &Pooled<'_>, tables: Vec<String>) -> Result<()> {
        let c = conn.conn.clone();
        self.run(async move {
            if tables.is_empty() {
                return Ok(c.client.batch_execute("COMMIT").await?);
            }
            let bump = c.statement(BUMP).await?;
            let params: [&(dyn ToSql + Sync); 1] = [&tables];
            let (bumped, committed) = tokio::join!(
                c.client.query(&bump, &params),
                c.client.batch_execute("COMMIT")
            );
            bumped?;
            Ok(committed?)
        })
        .map_err(|e| self.fail(Some(conn), e))
    }

    fn rollback(&self, conn: &Pooled<'_>) {
        // A failed ROLLBACK marks the connection broken: dropping it rolls
        // back on the server.
        if self.batch(conn, "ROLLBACK").is_ok() {
            conn.set_in_txn(false);
        }
    }

    pub(crate) fn versions(&self, tables: &[&str]) -> Result<Vec<u64>> {
        let names: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
        let rows = self.read(VERSIONS, vec![Box::new(names)])?;
        let mut found = HashMap::new();
        for r in rows {
            let (t, v): (String, i64) = (column(&r, 0)?, column(&r, 1)?);
            found.insert(t, u64::try_from(v).unwrap_or(0));
        }
        Ok(tables
            .iter()
            .map(|t| found.get(*t).copied().unwrap_or(0))
            .collect())
    }

    pub(crate) fn ping(&self) -> Result<()> {
        self.read("SELECT 1", Vec::new()).map(|_| ())
    }

    /// Leases change inside a write transaction, so they are serialized
    /// with the work that [`PgTxn::holds_lease`] fences, as in redb.
    pub(crate) fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        if has_nul(&[name, holder]) {
            return Err(nul_refused());
        }
        let ttl_ms = u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_LEASE_MS);
        let ttl_ms = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(|w| {
            let t = pg_txn(w)?;
            let rows = t.query(
                LEASE,
                vec![
                    Box::new(name.clone()),
                    Box::new(holder.clone()),
                    Box::new(ttl_ms),
                ],
            )?;
            match rows.first() {
                Some(r) => {
                    let epoch: i64 = column(r, 0)?;
                    Ok(Some(Lease {
                        epoch: u64::try_from(epoch).unwrap_or(0),
                    }))
                }
                None => Ok(None),
            }
        })
    }

    pub(crate) fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        if has_nul(&[name, holder]) {
            return Ok(());
        }
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(|w| {
            pg_txn(w)?.query(RELEASE, vec![Box::new(name), Box::new(holder)])?;
            Ok(())
        })
    }

    pub(crate) fn leases(&self, prefix: &str) -> Result<Vec<LeaseInfo>> {
        if has_nul(&[prefix]) {
            return Ok(Vec::new());
        }
        let rows = self.read(LEASES, vec![Box::new(prefix.to_owned())])?;
        rows.iter()
            .map(|r| {
                let epoch: i64 = column(r, 2)?;
                Ok(LeaseInfo {
                    name: column(r, 0)?,
                    holder: column(r, 1)?,
                    epoch: u64::try_from(epoch).unwrap_or(0),
                    live: column(r, 3)?,
                })
            })
            .collect()
    }

    /// Raw SQL, for tests that need an odd database.
    #[cfg(test)]
    pub(crate) fn batch_for_tests(&self, sql: &str) -> Result<()> {
        let conn = self.checkout()?;
        self.batch(&conn, sql.to_owned())
    }
}

/// The PostgreSQL side of a [`WriteTxn`] (from inside [`PgStore::write`]).
fn pg_txn<'w, 'a>(w: &'w WriteTxn<'a>) -> Result<&'w PgTxn<'a>> {
    match &w.inner {
        TxnInner::Postgres(t) => Ok(t),
        TxnInner::Redb(_) => Err(StoreError::Database {
            detail: "a redb transaction in the PostgreSQL store".into(),
        }),
    }
}

fn column<'r, T: tokio_postgres::types::FromSql<'r>>(row: &'r Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(|e| StoreError::Database {
        detail: pg_detail(&e),
    })
}

fn get_on(store: &PgStore, conn: &Pooled<'_>, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
    let rows = store.query(
        conn,
        GET,
        vec![Box::new(table.to_owned()), Box::new(key.to_owned())],
    )?;
    rows.first().map(|r| column(r, 0)).transpose()
}

/// The records of `table` whose key starts with `prefix`, after `after`,
/// at most `limit`, in byte order (descending with `reverse`): the same
/// answers as the embedded store's range walks.
fn range_on(
    store: &PgStore,
    conn: &Pooled<'_>,
    table: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    reverse: bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut sql = "SELECT key, value FROM ferry_records WHERE tbl = $1 AND key >= $2".to_owned();
    let mut params: Vec<Param> = vec![Box::new(table.to_owned()), Box::new(prefix.to_owned())];
    let mut bound = |op: &str, value: &str| {
        params.push(Box::new(value.to_owned()));
        sql.push_str(&format!(" AND key {op} ${}", params.len()));
    };
    if let Some(end) = prefix_end(prefix) {
        bound("<", &end);
    }
    if let Some(a) = after {
        // No key holds a NUL (text cannot): keys after "c\0..." are the
        // keys after "c", keys before it are "c" and the keys before "c".
        match (a.split_once('\0'), reverse) {
            (None, false) => bound(">", a),
            (None, true) => bound("<", a),
            (Some((cut, _)), false) => bound(">", cut),
            (Some((cut, _)), true) => bound("<=", cut),
        }
    }
    sql.push_str(if reverse {
        " ORDER BY key DESC"
    } else {
        " ORDER BY key"
    });
    if limit != usize::MAX {
        params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    let rows = store.query(conn, sql, params)?;
    rows.iter()
        .map(|r| Ok((column(r, 0)?, column(r, 1)?)))
        .collect()
}

/// The PostgreSQL side of a [`WriteTxn`]: statements on the connection
/// that holds the write lock.
pub(crate) struct PgTxn<'a> {
    store: &'a PgStore,
    conn: &'a Pooled<'a>,
    /// The tables this transaction wrote (their versions grow at commit).
    touched: BTreeSet<String>,
    /// The first statement that failed, if one did (see [`PgStore::write`]).
    failed: Mutex<Option<String>>,
}

impl PgTxn<'_> {
    /// Remembers a failed statement: the transaction cannot commit then.
    fn noted<R>(&self, r: Result<R>) -> Result<R> {
        if let Err(e) = &r {
            self.failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| e.to_string());
        }
        r
    }

    fn query(&self, sql: &'static str, params: Vec<Param>) -> Result<Vec<Row>> {
        self.noted(self.store.query(self.conn, sql, params))
    }

    pub(crate) fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        if has_nul(&[table, key]) {
            return Ok(None);
        }
        self.noted(get_on(self.store, self.conn, table, key))
    }

    pub(crate) fn scan(&self, table: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        if has_nul(&[table, prefix]) {
            return Ok(Vec::new());
        }
        self.noted(range_on(
            self.store,
            self.conn,
            table,
            prefix,
            None,
            usize::MAX,
            false,
        ))
    }

    pub(crate) fn put(&mut self, table: &str, key: &str, bytes: Vec<u8>) -> Result<()> {
        if has_nul(&[table, key]) {
            return Err(nul_refused());
        }
        self.touched.insert(table.to_owned());
        self.query(
            PUT,
            vec![
                Box::new(table.to_owned()),
                Box::new(key.to_owned()),
                Box::new(bytes),
            ],
        )
        .map(|_| ())
    }

    pub(crate) fn delete(&mut self, table: &str, key: &str) -> Result<bool> {
        if has_nul(&[table, key]) {
            return Ok(false);
        }
        self.touched.insert(table.to_owned());
        let rows = self.query(
            DELETE,
            vec![Box::new(table.to_owned()), Box::new(key.to_owned())],
        )?;
        Ok(!rows.is_empty())
    }

    pub(crate) fn holds_lease(&self, name: &str, holder: &str, epoch: u64) -> Result<bool> {
        let Ok(epoch) = i64::try_from(epoch) else {
            return Ok(false);
        };
        if has_nul(&[name, holder]) {
            return Ok(false);
        }
        let rows = self.query(
            HOLDS,
            vec![
                Box::new(name.to_owned()),
                Box::new(holder.to_owned()),
                Box::new(epoch),
            ],
        )?;
        Ok(!rows.is_empty())
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn a_prefix_ends_at_the_next_code_point() {
        assert_eq!(prefix_end("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_end("").as_deref(), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end("\u{10FFFF}").as_deref(), None);
        // Every string with the prefix sorts below the end, in bytes.
        for s in ["a/", "a/\u{10FFFF}\u{10FFFF}", "a/zzz", "a/\u{7F}"] {
            assert!(s.as_bytes() < prefix_end("a/").unwrap_or_default().as_bytes());
        }
    }

    #[test]
    fn a_described_url_has_no_password() {
        let c = Config::from_str("postgresql://ferry:s3cret@db.example:6432/ferry").unwrap();
        let d = describe(&c);
        assert_eq!(d, "postgresql://ferry@db.example:6432/ferry");
        let c = Config::from_str("postgresql:///ferry?host=/tmp/sock&user=u").unwrap();
        assert_eq!(describe(&c), "postgresql://u@/ferry?host=/tmp/sock");
    }
}
