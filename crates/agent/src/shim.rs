//! The per-task shim: a small process (`ferry shim`, the ferry binary
//! re-executed) that outlives `ferry server`, as containerd's shims do.
//!
//! The shim is the parent (child subreaper) of the task's container inits,
//! holds their stdout/stderr pipes and keeps their exit statuses until the
//! server acknowledges them. The server talks to it over a unix socket
//! `SHIM_DIR/<task_id>.sock` (mode 0600) with line-delimited JSON, version
//! [`PROTOCOL_VERSION`] named in a `hello` first; a shim answers a version it
//! does not speak with an error, so an upgraded server can refuse clearly.
//! Every log line stays in the shim's memory until the server acknowledges
//! it (`ack_logs`, sent once the line is in the log store), bounded by
//! [`BUFFER_LINES`] and [`BUFFER_BYTES`] (the oldest go first and are
//! counted). Lines not acknowledged when a server goes (stopped, or killed
//! with lines still in the socket) are sent again, with their original
//! timestamps, to the next server that says hello: delivery is at least
//! once, and a duplicate needs the server killed between storing a batch
//! and acknowledging it. A server that leaves on purpose detaches first
//! and reads everything sent up to then, so it leaves no duplicate.
//! Nothing is written to disk by the shim but its own diagnostics (never a
//! log line).
//!
//! Both additions (`detach`, `ack_logs`) are announced in the shim's hello
//! ([`FEATURES`]): a server re-adopting a shim of an older build, which
//! knows neither, sends neither, so the protocol version stays 1.
//!
//! The server (through [`ShimClient`]) still runs `runc start`, `kill`,
//! `exec` and `delete` itself: those need no parent. Only `runc create`
//! runs in the shim, so the container's init and pipes belong to it.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::logs::{LogEvent, LogSink};
use crate::runc::{self, Runc};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// What this build's shim speaks beyond version 1's requests.
pub const FEATURES: &[&str] = &["detach", "ack_logs"];
/// Most log lines a shim keeps unacknowledged.
pub const BUFFER_LINES: usize = 100_000;
/// Most bytes of log lines a shim keeps unacknowledged.
pub const BUFFER_BYTES: usize = 32 << 20;
/// Longest frame (one JSON line) either side accepts: a log line is at
/// most 256 KiB, plus its envelope.
pub const MAX_FRAME: usize = 1 << 20;

/// A shim failure, as the server sees it.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Socket or process I/O.
    #[error("shim {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The other side broke the protocol or speaks another version.
    #[error("shim protocol: {0}")]
    Protocol(String),
    /// The shim refused a request (its reason).
    #[error("{0}")]
    Refused(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ShimError {
    move |source| ShimError::Io { what, source }
}

/// Server → shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// First message of every connection.
    Hello {
        /// The server's protocol version.
        version: u32,
    },
    /// `runc create` a container with its stdio on the shim's pipes.
    Create {
        /// The container's name in the task.
        name: String,
        /// runc's id.
        id: String,
        /// The OCI bundle.
        bundle: PathBuf,
        /// runc's `--log`.
        log: PathBuf,
    },
    /// The server has recorded `name`'s exit.
    Ack {
        /// The container.
        name: String,
    },
    /// The server is leaving (its containers keep running): answer
    /// `detached` and send nothing more on this connection; lines from
    /// then on wait in the buffer for the next server. The server reads
    /// up to the answer before it exits, so no line is in flight when it
    /// goes.
    Detach,
    /// Every log line up to `seq` is in the log store: the shim may
    /// forget them.
    AckLogs {
        /// The last stored line's sequence number.
        seq: u64,
    },
    /// Every container is deleted: exit.
    Shutdown,
}

/// What the shim knows of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// The container's name.
    pub name: String,
    /// Its init's host pid.
    pub pid: i32,
    /// Its exit code once it exited.
    pub exit: Option<i32>,
    /// Whether a server acknowledged the exit.
    pub acked: bool,
}

/// Shim → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Answer to `hello`.
    Hello {
        /// The shim's protocol version.
        version: u32,
        /// Its task.
        task_id: String,
        /// Its containers.
        containers: Vec<ContainerState>,
        /// Log lines dropped (buffer full) since the last hello.
        dropped: u64,
        /// Requests beyond version 1's it answers ([`FEATURES`]; absent
        /// from older shims).
        #[serde(default)]
        features: Vec<String>,
    },
    /// Answer to `create`.
    Created {
        /// The init's host pid.
        pid: i32,
    },
    /// Answer to `shutdown`.
    Bye,
    /// Answer to `detach`: the last frame of the connection.
    Detached,
    /// A refused request.
    Error {
        /// Why.
        message: String,
    },
    /// One line a container wrote.
    Log {
        /// The container.
        name: String,
        /// When the shim read it (ms since the epoch).
        ts: i64,
        /// The line.
        line: String,
        /// Its number in the shim's stream of lines, for `ack_logs`
        /// (absent from older shims, whose lines are not acknowledged).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// A container exited (repeated after each hello until acknowledged).
    Exit {
        /// The container.
        name: String,
        /// Its code (128 + signal when killed).
        code: i32,
    },
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let mut b = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    b.push(b'\n');
    w.write_all(&b)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` at EOF. A frame over [`MAX_FRAME`] or that
/// is not valid JSON of `T` is an error.
pub fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl BufRead,
) -> Result<Option<T>, ShimError> {
    let mut buf = Vec::new();
    let n = r
        .take(MAX_FRAME as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(io("reading"))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(ShimError::Protocol(if n > MAX_FRAME {
            format!("frame longer than {MAX_FRAME} bytes")
        } else {
            "truncated frame".into()
        }));
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| ShimError::Protocol(format!("bad frame: {e}")))
}

/// The shim's socket of a task.
pub fn socket_path(shim_dir: &Path, task_id: &str) -> PathBuf {
    shim_dir.join(format!("{task_id}.sock"))
}

// ---------------------------------------------------------------- shim side

/// Log lines not yet acknowledged by a server (sent or not), bounded;
/// the oldest go first.
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: VecDeque<Message>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    /// The last sequence number handed to a connection: a line past it
    /// that goes for room was never delivered, and is counted.
    sent: u64,
    /// Lines dropped since the last [`LogBuffer::take_dropped`].
    dropped: u64,
}

fn seq_of(m: &Message) -> u64 {
    match m {
        Message::Log { seq, .. } => seq.unwrap_or(0),
        _ => 0,
    }
}

impl LogBuffer {
    /// A buffer of at most `max_lines` lines and `max_bytes` bytes.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            max_lines,
            max_bytes,
            ..Self::default()
        }
    }

    fn size(m: &Message) -> usize {
        match m {
            Message::Log { line, name, .. } => line.len() + name.len() + 16,
            _ => 16,
        }
    }

    /// Keeps `m`, dropping the oldest lines past the bound.
    pub fn push(&mut self, m: Message) {
        self.bytes += Self::size(&m);
        self.lines.push_back(m);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some(old) => {
                    self.bytes -= Self::size(&old);
                    if seq_of(&old) > self.sent {
                        self.dropped += 1;
                    }
                }
                None => break,
            }
        }
    }

    /// Forgets the lines up to `seq` (they are stored).
    pub fn ack(&mut self, seq: u64) {
        while let Some(m) = self.lines.front() {
            let s = seq_of(m);
            if s > seq {
                break;
            }
            self.bytes -= Self::size(m);
            self.lines.pop_front();
        }
    }

    /// Records that lines up to `seq` went down a connection.
    fn sent(&mut self, seq: u64) {
        self.sent = self.sent.max(seq);
    }

    /// Everything kept, oldest first (to send again after a hello).
    fn kept(&self) -> Vec<Message> {
        self.lines.iter().cloned().collect()
    }

    /// Lines dropped so far; resets the count.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Lines kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

struct ShimState {
    task_id: String,
    conn: Option<UnixStream>,
    buffer: LogBuffer,
    /// The last log line's sequence number.
    seq: u64,
    containers: BTreeMap<String, ContainerState>,
}

impl ShimState {
    fn new(task_id: String, buffer: LogBuffer) -> Self {
        Self {
            task_id,
            conn: None,
            buffer,
            seq: 0,
            containers: BTreeMap::new(),
        }
    }

    /// A line a container wrote: numbered, kept until acknowledged, sent
    /// at once if a server is connected.
    fn log(&mut self, name: String, ts: i64, line: String) {
        self.seq += 1;
        let m = Message::Log {
            name,
            ts,
            line,
            seq: Some(self.seq),
        };
        self.buffer.push(m.clone());
        if self.write(&m) {
            self.buffer.sent(self.seq);
        }
    }

    /// Sends `m` (not a log line) to the server if one is connected.
    /// Exits are not kept here: they are resent after each hello until
    /// acknowledged.
    fn send(&mut self, m: Message) {
        self.write(&m);
    }

    fn write(&mut self, m: &Message) -> bool {
        if let Some(c) = &mut self.conn {
            if write_frame(c, m).is_ok() {
                return true;
            }
            self.conn = None;
        }
        false
    }
}

type Shared = Arc<Mutex<ShimState>>;

fn lock(s: &Shared) -> MutexGuard<'_, ShimState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Arguments of the shim process (nothing secret: ids and paths).
#[derive(Debug, Clone)]
pub struct ShimArgs {
    /// The task.
    pub task_id: String,
    /// The socket to serve.
    pub socket: PathBuf,
    /// The OCI runtime.
    pub runc: Runc,
}

/// Runs the shim until a server asks it to shut down. Prints `ready` on
/// stdout once the socket is listening.
pub fn run(args: ShimArgs) -> Result<(), ShimError> {
    // Its own session: signals meant for the server's process group (a
    // Ctrl-C) do not reach it, and it has no controlling terminal.
    let _ = nix::unistd::setsid();
    runc::become_subreaper().map_err(|e| ShimError::Io {
        what: "PR_SET_CHILD_SUBREAPER",
        source: e.into(),
    })?;
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the socket directory"))?;
    }
    let _ = std::fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket).map_err(io("binding the socket"))?;
    std::fs::set_permissions(&args.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io("chmod of the socket"))?;
    let state: Shared = Arc::new(Mutex::new(ShimState::new(
        args.task_id.clone(),
        LogBuffer::new(BUFFER_LINES, BUFFER_BYTES),
    )));
    {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // One server at a time: a new connection replaces the old one.
        if serve(&args, &state, stream) {
            break;
        }
    }
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}

/// Serves one connection; true when asked to shut down.
fn serve(args: &ShimArgs, state: &Shared, stream: UnixStream) -> bool {
    let Ok(write) = stream.try_clone() else {
        return false;
    };
    let mut r = BufReader::new(stream);
    let mut write = Some(write);
    loop {
        let req: Request = match read_frame(&mut r) {
            Ok(Some(q)) => q,
            Ok(None) | Err(_) => {
                let mut st = lock(state);
                if write.is_none() {
                    st.conn = None;
                }
                return false;
            }
        };
        match req {
            Request::Hello { version } => {
                let Some(mut w) = write.take() else {
                    continue;
                };
                if version != PROTOCOL_VERSION {
                    let _ = write_frame(
                        &mut w,
                        &Message::Error {
                            message: format!(
                                "protocol version {version} is not spoken by this shim (it speaks {PROTOCOL_VERSION})"
                            ),
                        },
                    );
                    return false;
                }
                let mut st = lock(state);
                let hello = Message::Hello {
                    version: PROTOCOL_VERSION,
                    task_id: st.task_id.clone(),
                    containers: st.containers.values().cloned().collect(),
                    dropped: st.buffer.take_dropped(),
                    features: FEATURES.iter().map(|f| f.to_string()).collect(),
                };
                if write_frame(&mut w, &hello).is_err() {
                    return false;
                }
                st.conn = Some(w);
                // Every line not yet stored, in order, before anything new.
                for m in st.buffer.kept() {
                    if !st.write(&m) {
                        break;
                    }
                    st.buffer.sent(seq_of(&m));
                }
                let exits: Vec<Message> = st
                    .containers
                    .values()
                    .filter(|c| !c.acked)
                    .filter_map(|c| {
                        c.exit.map(|code| Message::Exit {
                            name: c.name.clone(),
                            code,
                        })
                    })
                    .collect();
                for m in exits {
                    st.send(m);
                }
            }
            Request::Create {
                name,
                id,
                bundle,
                log,
            } => {
                let reply = match create(args, state, &name, &id, &bundle, &log) {
                    Ok(pid) => Message::Created { pid },
                    Err(message) => Message::Error { message },
                };
                lock(state).send(reply);
            }
            Request::AckLogs { seq } => lock(state).buffer.ack(seq),
            Request::Ack { name } => {
                if let Some(c) = lock(state).containers.get_mut(&name) {
                    c.acked = true;
                }
            }
            Request::Detach => {
                // Under the state lock: no line can follow the answer.
                let mut st = lock(state);
                st.send(Message::Detached);
                st.conn = None;
            }
            Request::Shutdown => {
                lock(state).send(Message::Bye);
                return true;
            }
        }
    }
}

/// `runc create` with stdout/stderr on pipes this process reads; a waiter
/// reports the exit once the init is reaped and both pipes are at EOF (so
/// every line precedes the exit).
fn create(
    args: &ShimArgs,
    state: &Shared,
    name: &str,
    id: &str,
    bundle: &Path,
    log: &Path,
) -> Result<i32, String> {
    let (out_r, out_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let pid = args
        .runc
        .create(id, bundle, log, Stdio::from(out_w), Stdio::from(err_w))
        .map_err(|e| e.to_string())?;
    lock(state).containers.insert(
        name.to_owned(),
        ContainerState {
            name: name.to_owned(),
            pid,
            exit: None,
            acked: false,
        },
    );
    let mut readers = Vec::new();
    for r in [out_r, err_r] {
        let (state, name) = (state.clone(), name.to_owned());
        if let Ok(h) = std::thread::Builder::new()
            .name("shim-log".into())
            .spawn(move || {
                crate::logs::read_lines(r, |ts, line| {
                    lock(&state).log(name.clone(), ts, line);
                })
            })
        {
            readers.push(h);
        }
    }
    let (state, name) = (state.clone(), name.to_owned());
    std::thread::Builder::new()
        .name("shim-wait".into())
        .spawn(move || {
            let code = runc::wait_exit(pid).unwrap_or(255);
            for r in readers {
                let _ = r.join();
            }
            let mut st = lock(&state);
            if let Some(c) = st.containers.get_mut(&name) {
                c.exit = Some(code);
            }
            st.send(Message::Exit { name, code });
        })
        .map_err(|e| format!("spawning a waiter: {e}"))?;
    Ok(pid)
}

// --------------------------------------------------------------- server side

/// Where a container's lines go: (group, stream), or nowhere.
pub type Routes = BTreeMap<String, Option<(String, String)>>;

/// The server's connection to one task's shim.
pub struct ShimClient {
    /// Shared with the event reader, which acknowledges stored lines.
    write: Arc<Mutex<UnixStream>>,
    /// Whether the shim answers `detach` (see [`FEATURES`]).
    detaches: bool,
    replies: Mutex<Receiver<Message>>,
    /// The shim process when this server started it (reaped at shutdown).
    child: Mutex<Option<Child>>,
    socket: PathBuf,
}

impl std::fmt::Debug for ShimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimClient")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// How long a server waits for a shim's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for its answer (`runc create` included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl ShimClient {
    /// Starts `exe shim ...` for `task_id` and connects to it.
    pub fn spawn(
        exe: &Path,
        shim_dir: &Path,
        runc: &Runc,
        task_id: &str,
        routes: Routes,
        sink: Arc<dyn LogSink>,
        on_exit: impl Fn(&str, i32) + Send + 'static,
    ) -> Result<(Self, Vec<ContainerState>), ShimError> {
        std::fs::create_dir_all(shim_dir).map_err(io("creating the shim directory"))?;
        let socket = socket_path(shim_dir, task_id);
        let diag = std::fs::File::create(shim_dir.join(format!("{task_id}.log")))
            .map_err(io("creating the shim's diagnostics file"))?;
        let mut child = Command::new(exe)
            .arg("shim")
            .arg("--task-id")
            .arg(task_id)
            .arg("--socket")
            .arg(&socket)
            .arg("--runtime")
            .arg(&runc.bin)
            .arg("--runtime-root")
            .arg(&runc.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(diag))
            .spawn()
            .map_err(io("starting"))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ShimError::Protocol(format!(
                "the shim did not start (see {})",
                shim_dir.join(format!("{task_id}.log")).display()
            )));
        }
        let (c, states) = Self::connect(&socket, routes, sink, on_exit)?;
        if let Ok(mut g) = c.child.lock() {
            *g = Some(child);
        }
        Ok((c, states))
    }

    /// Connects to a live shim and says hello; returns its containers.
    /// Lines it buffered and exits not yet acknowledged follow as events.
    pub fn connect(
        socket: &Path,
        routes: Routes,
        sink: Arc<dyn LogSink>,
        on_exit: impl Fn(&str, i32) + Send + 'static,
    ) -> Result<(Self, Vec<ContainerState>), ShimError> {
        let stream = UnixStream::connect(socket).map_err(io("connecting"))?;
        // A shim serves one server at a time: one still held by a hung
        // old server must not hang this one's start.
        stream
            .set_read_timeout(Some(HELLO_TIMEOUT))
            .map_err(io("setting a timeout"))?;
        let mut write = stream.try_clone().map_err(io("cloning the socket"))?;
        write_frame(
            &mut write,
            &Request::Hello {
                version: PROTOCOL_VERSION,
            },
        )
        .map_err(io("saying hello"))?;
        let mut r = BufReader::new(stream);
        let (states, features) = match read_frame::<Message>(&mut r)? {
            Some(Message::Hello {
                version,
                containers,
                dropped,
                task_id,
                features,
            }) => {
                if version != PROTOCOL_VERSION {
                    return Err(ShimError::Protocol(format!(
                        "the shim speaks version {version}, this server {PROTOCOL_VERSION}"
                    )));
                }
                if dropped > 0 {
                    tracing::warn!(
                        task = %task_id,
                        dropped,
                        "log lines were dropped while no server was connected (buffer full)"
                    );
                }
                (containers, features)
            }
            Some(Message::Error { message }) => return Err(ShimError::Refused(message)),
            Some(other) => {
                return Err(ShimError::Protocol(format!(
                    "expected hello, got {other:?}"
                )));
            }
            None => return Err(ShimError::Protocol("the shim closed the connection".into())),
        };
        r.get_ref()
            .set_read_timeout(None)
            .map_err(io("clearing the timeout"))?;
        let has = |f: &str| features.iter().any(|x| x == f);
        let write = Arc::new(Mutex::new(write));
        let acks = has("ack_logs").then(|| write.clone());
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("shim-events".into())
            .spawn(move || events(r, routes, sink, on_exit, tx, acks))
            .map_err(io("spawning the event reader"))?;
        Ok((
            Self {
                write,
                detaches: has("detach"),
                replies: Mutex::new(rx),
                child: Mutex::new(None),
                socket: socket.to_path_buf(),
            },
            states,
        ))
    }

    fn request(&self, q: &Request) -> Result<Message, ShimError> {
        let replies = self
            .replies
            .lock()
            .map_err(|_| ShimError::Protocol("reply channel poisoned".into()))?;
        {
            let mut w = self
                .write
                .lock()
                .map_err(|_| ShimError::Protocol("socket poisoned".into()))?;
            write_frame(&mut *w, q).map_err(io("sending"))?;
        }
        match replies.recv_timeout(REPLY_TIMEOUT) {
            Ok(Message::Error { message }) => Err(ShimError::Refused(message)),
            Ok(m) => Ok(m),
            Err(_) => Err(ShimError::Protocol("no answer from the shim".into())),
        }
    }

    /// `runc create` in the shim; the init's pid.
    pub fn create(
        &self,
        name: &str,
        id: &str,
        bundle: &Path,
        log: &Path,
    ) -> Result<i32, ShimError> {
        match self.request(&Request::Create {
            name: name.into(),
            id: id.into(),
            bundle: bundle.into(),
            log: log.into(),
        })? {
            Message::Created { pid } => Ok(pid),
            other => Err(ShimError::Protocol(format!(
                "expected created, got {other:?}"
            ))),
        }
    }

    /// Acknowledges `name`'s exit (the shim stops repeating it).
    pub fn ack(&self, name: &str) {
        if let Ok(mut w) = self.write.lock() {
            let _ = write_frame(&mut *w, &Request::Ack { name: name.into() });
        }
    }

    /// Tells the shim this server is leaving, and returns once every line
    /// it sent before is in the sink; later lines wait in the shim for the
    /// next server.
    pub fn detach(&self) -> Result<(), ShimError> {
        // An older shim keeps nothing for the next server but the lines
        // still to come; it has no answer to wait for.
        if !self.detaches {
            return Ok(());
        }
        match self.request(&Request::Detach)? {
            Message::Detached => Ok(()),
            other => Err(ShimError::Protocol(format!(
                "expected detached, got {other:?}"
            ))),
        }
    }

    /// Asks the shim to exit (every container deleted), and reaps it if
    /// this process started it.
    pub fn shutdown(&self) -> Result<(), ShimError> {
        let r = self.request(&Request::Shutdown).map(|_| ());
        if let Ok(mut g) = self.child.lock()
            && let Some(mut c) = g.take()
        {
            let _ = c.wait();
        }
        r
    }
}

/// Most log lines handed to the sink in one call.
const BATCH: usize = 1000;

/// The event reader of one connection: logs to the sink, exits to
/// `on_exit`, replies to the requester. Lines already read (a shim's
/// buffer after a restart comes at once) go to the sink in batches per
/// stream: one store write each rather than one per line. With `acks`
/// (a shim that keeps lines until told), each stored batch is
/// acknowledged.
fn events(
    mut r: BufReader<UnixStream>,
    routes: Routes,
    sink: Arc<dyn LogSink>,
    on_exit: impl Fn(&str, i32),
    replies: Sender<Message>,
    acks: Option<Arc<Mutex<UnixStream>>>,
) {
    let mut batch: BTreeMap<String, Vec<LogEvent>> = BTreeMap::new();
    let mut held = 0usize;
    // The last line read, and the last one acknowledged.
    let (mut last, mut acked) = (0u64, 0u64);
    let mut flush = |batch: &mut BTreeMap<String, Vec<LogEvent>>, held: &mut usize, last: u64| {
        for (name, events) in std::mem::take(batch) {
            if let Some(Some((group, stream))) = routes.get(&name) {
                sink.put(group, stream, &events);
            }
        }
        *held = 0;
        if last > acked
            && let Some(w) = &acks
            && let Ok(mut w) = w.lock()
            && write_frame(&mut *w, &Request::AckLogs { seq: last }).is_ok()
        {
            acked = last;
        }
    };
    loop {
        let m = match read_frame::<Message>(&mut r) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("shim connection: {e}");
                break;
            }
        };
        match m {
            Message::Log {
                name,
                ts,
                line,
                seq,
            } => {
                batch.entry(name).or_default().push(LogEvent {
                    timestamp_ms: ts,
                    message: line,
                });
                held += 1;
                last = last.max(seq.unwrap_or(0));
            }
            Message::Exit { name, code } => {
                // Every line of the container before its exit.
                flush(&mut batch, &mut held, last);
                on_exit(&name, code);
            }
            Message::Detached => {
                // Every line before it is in the sink (and acknowledged)
                // before the detaching server hears the answer and exits.
                flush(&mut batch, &mut held, last);
                let _ = replies.send(Message::Detached);
            }
            other => {
                let _ = replies.send(other);
            }
        }
        if held >= BATCH || (held > 0 && r.buffer().is_empty()) {
            flush(&mut batch, &mut held, last);
        }
    }
    flush(&mut batch, &mut held, last);
}

/// Asks the shim at `socket` to exit, whatever its containers' state (used
/// when releasing an orphaned task after its containers are deleted).
pub fn shutdown_at(socket: &Path) -> Result<(), ShimError> {
    let (c, _) = ShimClient::connect(
        socket,
        Routes::new(),
        Arc::new(crate::logs::NullSink),
        |_, _| {},
    )?;
    c.shutdown()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::JoinHandle;

    #[test]
    fn frames_round_trip_and_refuse_garbage() {
        let mut buf = Vec::new();
        let q = Request::Create {
            name: "web".into(),
            id: "t-web".into(),
            bundle: "/b".into(),
            log: "/b/runc.log".into(),
        };
        write_frame(&mut buf, &q).unwrap();
        write_frame(&mut buf, &Request::Hello { version: 1 }).unwrap();
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 2);
        let mut r = BufReader::new(&buf[..]);
        assert_eq!(read_frame::<Request>(&mut r).unwrap(), Some(q));
        assert_eq!(
            read_frame::<Request>(&mut r).unwrap(),
            Some(Request::Hello { version: 1 })
        );
        assert_eq!(read_frame::<Request>(&mut r).unwrap(), None);
        // Not JSON, unknown op, truncated, too long.
        for bad in [
            &b"nope\n"[..],
            b"{\"op\":\"fly\"}\n",
            b"{\"op\":\"shutdown\"}",
        ] {
            assert!(matches!(
                read_frame::<Request>(&mut BufReader::new(bad)),
                Err(ShimError::Protocol(_))
            ));
        }
        let long = vec![b'a'; MAX_FRAME + 10];
        assert!(
            matches!(read_frame::<Request>(&mut BufReader::new(&long[..])), Err(ShimError::Protocol(m)) if m.contains("longer"))
        );
    }

    fn log(i: u64) -> Message {
        Message::Log {
            name: "app".into(),
            ts: 1000 + i as i64,
            line: format!("l{i}"),
            seq: Some(i),
        }
    }

    fn shim_args() -> ShimArgs {
        ShimArgs {
            task_id: "t1".into(),
            socket: "/nonexistent".into(),
            runc: Runc {
                bin: "/bin/false".into(),
                root: "/nonexistent".into(),
            },
        }
    }

    /// A server's end of a socket pair whose other end the serve loop
    /// serves, `hello` of `version` said.
    fn hello(
        state: &Shared,
        version: u32,
    ) -> (UnixStream, BufReader<UnixStream>, JoinHandle<bool>) {
        let (a, b) = UnixStream::pair().unwrap();
        let st2 = state.clone();
        let t = std::thread::spawn(move || serve(&shim_args(), &st2, b));
        let mut w = a.try_clone().unwrap();
        write_frame(&mut w, &Request::Hello { version }).unwrap();
        (w, BufReader::new(a), t)
    }

    /// A connected server: hello said and answered.
    fn connect(state: &Shared) -> (UnixStream, BufReader<UnixStream>, JoinHandle<bool>) {
        let (w, mut r, t) = hello(state, 1);
        match read_frame::<Message>(&mut r).unwrap() {
            Some(Message::Hello { features, .. }) => {
                assert_eq!(features, FEATURES);
            }
            other => panic!("{other:?}"),
        }
        (w, r, t)
    }

    fn new_state(max_lines: usize) -> Shared {
        Arc::new(Mutex::new(ShimState::new(
            "t1".into(),
            LogBuffer::new(max_lines, 1 << 20),
        )))
    }

    #[test]
    fn buffer_keeps_newest_within_bounds_and_counts_drops() {
        let mut b = LogBuffer::new(3, 1 << 20);
        for i in 1..=5 {
            b.push(log(i));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.take_dropped(), 2);
        assert_eq!(b.take_dropped(), 0);
        assert_eq!(b.kept(), [log(3), log(4), log(5)]);
        // Acknowledged lines go; an acknowledgement of fewer is harmless.
        b.ack(3);
        b.ack(2);
        assert_eq!(b.kept(), [log(4), log(5)]);
        // Lines already sent that make room are not counted as dropped.
        b.sent(5);
        for i in 6..=7 {
            b.push(log(i));
        }
        assert_eq!(b.take_dropped(), 0);
        b.push(log(8));
        b.push(log(9));
        assert_eq!(b.take_dropped(), 1, "5 was sent, 6 never");
        assert_eq!(b.kept(), [log(7), log(8), log(9)]);
        b.ack(9);
        assert!(b.is_empty());
        // The byte bound holds too.
        let mut b = LogBuffer::new(1000, 100);
        for i in 1..=10 {
            b.push(log(i));
        }
        assert!(b.len() < 10 && !b.is_empty());
        assert_eq!(b.take_dropped() as usize + b.len(), 10);
    }

    /// A shim's serve loop over a socket pair: version mismatch refused,
    /// hello answered with the features, lines kept while no server was
    /// connected delivered in order with their timestamps and numbers,
    /// unacknowledged exits resent, shutdown answered.
    #[test]
    fn serve_speaks_the_protocol() {
        let state = new_state(10);
        {
            let mut st = lock(&state);
            st.containers.insert(
                "app".into(),
                ContainerState {
                    name: "app".into(),
                    pid: 42,
                    exit: Some(3),
                    acked: false,
                },
            );
            for i in 1..=12 {
                st.log("app".into(), 1000 + i, format!("l{i}"));
            }
        }
        // An old (or future) server is refused clearly.
        let (_w, mut r, t) = hello(&state, 99);
        match read_frame::<Message>(&mut r).unwrap() {
            Some(Message::Error { message }) => assert!(message.contains("99"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(!t.join().unwrap());

        let (mut w, mut r, t) = hello(&state, 1);
        match read_frame::<Message>(&mut r).unwrap() {
            Some(Message::Hello {
                containers,
                dropped,
                ..
            }) => {
                assert_eq!(dropped, 2);
                assert_eq!(containers.len(), 1);
                assert_eq!(containers[0].exit, Some(3));
            }
            other => panic!("{other:?}"),
        }
        for i in 3..=12 {
            assert_eq!(read_frame::<Message>(&mut r).unwrap(), Some(log(i)));
        }
        assert_eq!(
            read_frame::<Message>(&mut r).unwrap(),
            Some(Message::Exit {
                name: "app".into(),
                code: 3
            })
        );
        write_frame(&mut w, &Request::Ack { name: "app".into() }).unwrap();
        write_frame(&mut w, &Request::Shutdown).unwrap();
        assert_eq!(read_frame::<Message>(&mut r).unwrap(), Some(Message::Bye));
        assert!(t.join().unwrap());
        assert!(lock(&state).containers["app"].acked);
    }

    /// Lines a server read but did not acknowledge (killed before it
    /// stored them) come again to the next server; acknowledged ones do
    /// not.
    #[test]
    fn unacknowledged_lines_are_sent_again_after_hello() {
        let state = new_state(100);
        let (mut w, mut r, t) = connect(&state);
        for i in 1..=4 {
            lock(&state).log("app".into(), 1000 + i, format!("l{i}"));
            assert_eq!(read_frame::<Message>(&mut r).unwrap(), Some(log(i as u64)));
        }
        write_frame(&mut w, &Request::AckLogs { seq: 2 }).unwrap();
        // The server dies (no detach).
        w.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(!t.join().unwrap());
        lock(&state).log("app".into(), 1005, "l5".into());
        let (_w, mut r, _t) = connect(&state);
        for i in 3..=5 {
            assert_eq!(read_frame::<Message>(&mut r).unwrap(), Some(log(i)));
        }
        assert_eq!(lock(&state).buffer.take_dropped(), 0);
    }

    /// `detach` is the last frame of a connection: lines read after it
    /// wait for the next server, none goes down the old socket where no
    /// one would read it.
    #[test]
    fn detach_ends_the_stream_and_keeps_later_lines() {
        let state = new_state(10);
        let (mut w, mut r, t) = connect(&state);
        lock(&state).log("app".into(), 1001, "l1".into());
        assert_eq!(read_frame::<Message>(&mut r).unwrap(), Some(log(1)));
        write_frame(&mut w, &Request::Detach).unwrap();
        assert_eq!(
            read_frame::<Message>(&mut r).unwrap(),
            Some(Message::Detached)
        );
        // Acknowledged as the detaching server stores its last batch.
        write_frame(&mut w, &Request::AckLogs { seq: 1 }).unwrap();
        lock(&state).log("app".into(), 1002, "l2".into());
        // The server goes: the shim's serve loop ends without shutting down.
        w.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(!t.join().unwrap());
        // Nothing followed the answer on the old connection.
        assert_eq!(read_frame::<Message>(&mut r).unwrap(), None);
        assert_eq!(lock(&state).buffer.kept(), [log(2)]);
    }

    /// The server side: stored lines are acknowledged, `detached` comes
    /// after every line before it is in the sink.
    #[test]
    fn the_event_reader_stores_then_acknowledges() {
        let (shim_end, server_end) = UnixStream::pair().unwrap();
        let sink = crate::logs::MemorySink::new();
        let routes: Routes = [("app".to_string(), Some(("g".to_string(), "s".to_string())))]
            .into_iter()
            .collect();
        let (tx, rx) = mpsc::channel();
        let writer = Arc::new(Mutex::new(server_end.try_clone().unwrap()));
        let sink2: Arc<dyn LogSink> = sink.clone();
        let reader = std::thread::spawn(move || {
            events(
                BufReader::new(server_end),
                routes,
                sink2,
                |_: &str, _: i32| {},
                tx,
                Some(writer),
            )
        });
        let mut shim_w = shim_end.try_clone().unwrap();
        for i in 1..=3 {
            write_frame(&mut shim_w, &log(i)).unwrap();
        }
        write_frame(&mut shim_w, &Message::Detached).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Message::Detached
        );
        assert_eq!(sink.events("g", "s").len(), 3);
        // The acknowledgement names the last stored line (possibly after
        // an earlier, smaller one).
        let mut r = BufReader::new(shim_end);
        let mut last = 0;
        while last < 3 {
            match read_frame::<Request>(&mut r).unwrap() {
                Some(Request::AckLogs { seq }) => {
                    assert!(seq > last);
                    last = seq;
                }
                other => panic!("{other:?}"),
            }
        }
        shim_w.shutdown(std::net::Shutdown::Write).unwrap();
        reader.join().unwrap();
    }
}
