//! What keeps the listener alive under its clients: timeouts for every
//! phase of a connection and caps on how many connections are held.
//!
//! Each connection is in one phase:
//! - *header*: accepted, or bytes of a request arrived after an idle
//!   spell, and the request head is not complete. Bounded in total by
//!   [`Limits::header_timeout`] (a slowloris trickling bytes gains nothing).
//! - *busy*: a request is being handled and its response written. Never
//!   cut for taking long, only for the client stalling: a read of the
//!   request body that has waited [`Limits::body_timeout`] for a byte (an
//!   inactivity timeout, so uploads of any size pass), or a response write
//!   the client has not drained for as long.
//! - *idle*: between requests on a keep-alive connection, bounded by
//!   [`Limits::idle_timeout`].
//!
//! Caps: [`Limits::max_connections`] in all, [`Limits::max_connections_per_source`]
//! per source address. A connection over a cap evicts a held connection
//! of that source (or, for the total cap, of any source) in the header or
//! idle phase: one that never made a request before one that did (a flood
//! that never sends a request goes before a client's pooled keep-alive
//! connection), the longest-waiting first. So a flood of connections
//! that never send a request cannot keep out a client that does, even when
//! both come from the same address (the AWS CLI and a local flood both
//! connect from 127.0.0.1). A connection being served is never evicted;
//! only when every held connection is busy is the new one refused, with a
//! 503 `ServiceUnavailableException`, and closed at once.
//!
//! The clock each connection checks is one watchdog per connection that
//! sleeps until the earliest deadline its phase can have, so an idle
//! connection costs no work between its deadlines.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The listener's timeouts and connection caps (see the module docs).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest a request head may take to arrive, from the connection's
    /// accept or from its first byte after an idle spell.
    pub header_timeout: Duration,
    /// Longest a keep-alive connection is held between requests.
    pub idle_timeout: Duration,
    /// Longest a request-body read or a response write may wait on the
    /// client without a byte moving.
    pub body_timeout: Duration,
    /// Most connections held at once.
    pub max_connections: usize,
    /// Most connections held at once from one source address.
    pub max_connections_per_source: usize,
}

/// Default [`Limits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Limits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`Limits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default [`Limits::max_connections_per_source`].
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
        }
    }
}

const HEADER: u8 = 0;
const IDLE: u8 = 1;
const BUSY: u8 = 2;
/// Evicted: its watchdog closes it.
const DEAD: u8 = 3;

/// Milliseconds on a monotonic clock, never 0 (0 means "not set" below).
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let ms = BASE.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

/// One held connection, shared by its I/O, its service and its watchdog.
pub(crate) struct Conn {
    id: u64,
    ip: IpAddr,
    phase: AtomicU8,
    /// When the header or idle phase began.
    since: AtomicU64,
    /// When a read began waiting on the client (0: none waiting).
    read_waiting: AtomicU64,
    /// When a write began waiting on the client (0: none waiting).
    write_waiting: AtomicU64,
    /// Whether a request was ever answered on it: such a connection is
    /// evicted only after every one that never made a request.
    served: std::sync::atomic::AtomicBool,
    /// Wakes the watchdog of an evicted connection.
    evict: tokio::sync::Notify,
}

impl Conn {
    /// A request head arrived: the connection is busy until its response
    /// is written ([`ResponseDone`]).
    pub(crate) fn begin_request(self: &Arc<Self>) -> ResponseDone {
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p != DEAD).then_some(BUSY)
            });
        self.served.store(true, Ordering::Relaxed);
        ResponseDone(self.clone())
    }

    /// When this connection's watchdog must look again, or `None` if a
    /// deadline has passed (or it was evicted) and it must close.
    fn next_check(&self, now: u64, l: &Limits) -> Option<u64> {
        let body = ms(l.body_timeout);
        // No deadline can appear sooner than the shortest timeout from
        // now, so looking again then never misses one.
        let mut deadline = now + ms(l.header_timeout).min(ms(l.idle_timeout)).min(body);
        let w = self.write_waiting.load(Ordering::Acquire);
        if w != 0 {
            deadline = deadline.min(w + body);
        }
        match self.phase.load(Ordering::Acquire) {
            HEADER => {
                deadline = deadline.min(self.since.load(Ordering::Acquire) + ms(l.header_timeout))
            }
            IDLE => {
                deadline = deadline.min(self.since.load(Ordering::Acquire) + ms(l.idle_timeout))
            }
            BUSY => {
                let r = self.read_waiting.load(Ordering::Acquire);
                if r != 0 {
                    deadline = deadline.min(r + body);
                }
            }
            _ => return None,
        }
        (deadline > now).then(|| deadline - now)
    }

    /// Marks this connection evicted if it is not serving a request.
    fn try_evict(&self) -> bool {
        let p = self.phase.load(Ordering::Acquire);
        if (p == HEADER || p == IDLE)
            && self
                .phase
                .compare_exchange(p, DEAD, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.evict.notify_one();
            return true;
        }
        false
    }

    /// Its place in the eviction order (lowest first), if evictable:
    /// connections that never made a request before those that did, each
    /// longest-waiting first; within one millisecond the older connection
    /// first (ids grow with admission), so the order never depends on the
    /// table's hash order.
    fn eviction_rank(&self) -> Option<(bool, u64, u64)> {
        let p = self.phase.load(Ordering::Acquire);
        (p == HEADER || p == IDLE).then(|| {
            (
                self.served.load(Ordering::Relaxed),
                self.since.load(Ordering::Acquire),
                self.id,
            )
        })
    }
}

/// Held by a response body: when the body is dropped (written, or the
/// connection gone) the connection turns idle.
pub(crate) struct ResponseDone(Arc<Conn>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.since.store(now_ms(), Ordering::Release);
        let _ = self
            .0
            .phase
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A response body that marks its connection idle once dropped.
pub(crate) struct TrackedBody {
    pub(crate) inner: crate::http::Body,
    pub(crate) _done: ResponseDone,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connections held, by id and by source address.
pub(crate) struct Table {
    limits: Limits,
    inner: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    next_id: u64,
    all: HashMap<u64, Arc<Conn>>,
    by_ip: HashMap<IpAddr, HashMap<u64, Arc<Conn>>>,
}

impl Held {
    fn remove(&mut self, c: &Conn) {
        self.all.remove(&c.id);
        if let Some(m) = self.by_ip.get_mut(&c.ip) {
            m.remove(&c.id);
            if m.is_empty() {
                self.by_ip.remove(&c.ip);
            }
        }
    }
}

/// Evicts the connection among `conns` waiting longest in the header or
/// idle phase; `None` if every one is busy.
fn evict_one<'a>(conns: impl Iterator<Item = &'a Arc<Conn>> + Clone) -> Option<Arc<Conn>> {
    // A candidate may turn busy between the scan and the eviction: look
    // again a few times rather than refuse.
    for _ in 0..8 {
        let victim = conns
            .clone()
            .filter_map(|c| c.eviction_rank().map(|r| (r, c)))
            .min_by_key(|(s, _)| *s)
            .map(|(_, c)| c)?;
        if victim.try_evict() {
            return Some(victim.clone());
        }
    }
    None
}

impl Table {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Held::default()),
        }
    }

    /// Holds a new connection from `ip`, evicting a waiting one if a cap is
    /// reached; `None` if the cap is reached by connections all busy.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Guard> {
        let mut held = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let per_source = self.limits.max_connections_per_source.max(1);
        if held.by_ip.get(&ip).is_some_and(|m| m.len() >= per_source) {
            let victim = evict_one(held.by_ip.get(&ip)?.values())?;
            held.remove(&victim);
        }
        if held.all.len() >= self.limits.max_connections.max(1) {
            let victim = evict_one(held.all.values())?;
            held.remove(&victim);
        }
        held.next_id += 1;
        let conn = Arc::new(Conn {
            id: held.next_id,
            ip,
            phase: AtomicU8::new(HEADER),
            since: AtomicU64::new(now_ms()),
            read_waiting: AtomicU64::new(0),
            write_waiting: AtomicU64::new(0),
            served: std::sync::atomic::AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        });
        held.all.insert(conn.id, conn.clone());
        held.by_ip
            .entry(ip)
            .or_default()
            .insert(conn.id, conn.clone());
        Some(Guard {
            table: self.clone(),
            conn,
        })
    }

    /// How many connections are held (for tests).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .all
            .len()
    }
}

/// A held connection; releases its place when dropped.
pub(crate) struct Guard {
    table: Arc<Table>,
    pub(crate) conn: Arc<Conn>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.table
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.conn);
    }
}

/// Drives `conn` (the connection's HTTP future) until it ends, or until
/// one of its deadlines passes or it is evicted: then drops it, which
/// closes the socket.
pub(crate) async fn drive(conn: impl Future, guard: Guard) {
    let mut conn = std::pin::pin!(conn);
    let c = &guard.conn;
    let limits = guard.table.limits.clone();
    loop {
        let Some(wait) = c.next_check(now_ms(), &limits) else {
            tracing::debug!(peer = %c.ip, "closing a connection past its deadline or evicted");
            return;
        };
        tokio::select! {
            biased;
            _ = &mut conn => return,
            () = c.evict.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}

/// The 503 a connection over the cap gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/x-amz-json-1.1\r\n\
content-length: 103\r\n\
connection: close\r\n\r\n\
{\"__type\":\"ServiceUnavailableException\",\"message\":\"the server holds too many connections; retry later\"}";

/// Answers a connection over the cap with a 503 and closes it, without
/// waiting on it: whatever of the request has arrived is read first so
/// the close is a FIN, not a reset that could discard the answer.
pub(crate) fn refuse(stream: tokio::net::TcpStream) {
    let mut buf = [0u8; 8192];
    let _ = stream.try_read(&mut buf);
    let _ = stream.try_write(REFUSED);
}

/// The socket, telling its connection when reads and writes wait on the
/// client and when a request starts arriving after an idle spell.
pub(crate) struct TrackedIo {
    pub(crate) inner: tokio::net::TcpStream,
    pub(crate) conn: Arc<Conn>,
}

impl TrackedIo {
    fn waiting<T>(slot: &AtomicU64, poll: &Poll<T>) {
        if poll.is_pending() {
            if slot.load(Ordering::Relaxed) == 0 {
                slot.store(now_ms(), Ordering::Release);
            }
        } else if slot.load(Ordering::Relaxed) != 0 {
            slot.store(0, Ordering::Release);
        }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        Self::waiting(&self.conn.read_waiting, &poll);
        if buf.filled().len() > before && self.conn.phase.load(Ordering::Acquire) == IDLE {
            // The next request's first bytes: the header clock starts.
            self.conn.since.store(now_ms(), Ordering::Release);
            let _ =
                self.conn
                    .phase
                    .compare_exchange(IDLE, HEADER, Ordering::AcqRel, Ordering::Acquire);
        }
        poll
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        Self::waiting(&self.conn.write_waiting, &poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        Self::waiting(&self.conn.write_waiting, &poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
