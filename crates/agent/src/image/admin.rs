//! The image store's admin socket (docs/images.md, "The admin socket"):
//! how `ferry image import|pull|ls|rm|prune` reach the running server,
//! which alone holds the KMS that seals the store.
//!
//! `DATA_DIR/run/admin.sock`, mode 0600 in a 0700 directory, owned by the
//! server's user; a connection is served only when the peer's uid
//! (`SO_PEERCRED`) is the server's. One request per connection, a line of
//! JSON:
//!
//! ```text
//! {"op":"import","path":"/abs/archive.tar","name":"httpd:2.4"}   (name optional)
//! {"op":"import","stdin":true}   then the archive's bytes to EOF (the client shuts down writing)
//! {"op":"pull","reference":"localhost:5000/app:1"}
//! {"op":"ls"} | {"op":"rm","name":"httpd:2.4"} | {"op":"prune"}
//! ```
//!
//! Answered with lines of JSON: `{"line":"..."}` (what the CLI prints),
//! `{"progress":{"start":"sha256:..","total":N}|{"bytes":N}|{"done":"sha256:.."}}`
//! while pulling, and last `{"ok":true}` or `{"error":"one line"}`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pull::{self, PullProgress};
use super::{ImageStore, archive};

/// The socket's path in a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("run").join("admin.sock")
}

/// A request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Import an archive: a file the server reads, or the bytes that
    /// follow the request line.
    Import {
        /// An absolute path on this host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
        /// The archive follows the request line.
        #[serde(default)]
        stdin: bool,
        /// `--name`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Pull from a registry.
    Pull {
        /// The image reference.
        reference: String,
    },
    /// List images.
    Ls,
    /// Remove a name.
    Rm {
        /// The name.
        name: String,
    },
    /// Remove every image no task uses.
    Prune,
}

/// A line of the answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// A line for the CLI to print.
    Line(String),
    /// Pull progress.
    Progress(Progress),
    /// Done.
    Ok(bool),
    /// Failed: one line.
    Error(String),
}

/// Pull progress over the socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Progress {
    /// A blob download starts.
    Start {
        /// The blob.
        digest: String,
        /// Its size.
        total: u64,
    },
    /// More bytes arrived.
    Bytes(u64),
    /// A blob is complete.
    Done(String),
}

/// Binds the socket (replacing a stale one), 0600 in a 0700 `run/`.
pub fn bind(data_dir: &Path) -> io::Result<UnixListener> {
    let path = socket_path(data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves connections until the listener fails, one thread each.
pub fn serve(listener: UnixListener, store: ImageStore) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else {
            continue;
        };
        let store = store.clone();
        let spawned = std::thread::Builder::new()
            .name("image-admin".into())
            .spawn(move || {
                if let Err(e) = handle(&store, conn) {
                    tracing::warn!("image admin connection: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("image admin connection: {e}");
        }
    }
}

fn send(out: &mut impl Write, r: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Serves one connection: checks the peer, runs its request.
pub fn handle(store: &ImageStore, conn: UnixStream) -> io::Result<()> {
    let mut out = conn.try_clone()?;
    let cred = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    if cred.uid() != nix::unistd::geteuid().as_raw() {
        return send(
            &mut out,
            &Reply::Error("refused: only the server's user may manage its images".into()),
        );
    }
    let mut input = BufReader::new(conn);
    let mut line = String::new();
    input.by_ref().take(64 << 10).read_line(&mut line)?;
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => return send(&mut out, &Reply::Error(format!("bad request: {e}"))),
    };
    let result = run(store, req, input, &mut out);
    match result {
        Ok(()) => send(&mut out, &Reply::Ok(true)),
        Err(e) => send(&mut out, &Reply::Error(e)),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    // One line: the answer is line-delimited.
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn run(
    store: &ImageStore,
    req: Request,
    input: impl Read,
    out: &mut impl Write,
) -> Result<(), String> {
    let mut lines: Vec<String> = Vec::new();
    match req {
        Request::Import { path, stdin, name } => {
            let (label, imported) = if stdin {
                let r = archive::import_from(store, input, Path::new("-"), name.as_deref());
                ("-".to_owned(), r)
            } else {
                let p = path.ok_or("import needs a path or stdin")?;
                let r = archive::import(store, &p, name.as_deref());
                (p.display().to_string(), r)
            };
            let imported = imported.map_err(|e| format!("importing {label}: {}", chain(&e)))?;
            for i in imported {
                for n in i.names {
                    lines.push(format!("{}\t{}", n.familiar(), i.manifest_digest));
                }
            }
        }
        Request::Pull { reference } => {
            let mut cb = |p: PullProgress| {
                let p = match p {
                    PullProgress::Start { digest, total } => Progress::Start { digest, total },
                    PullProgress::Bytes(n) => Progress::Bytes(n),
                    PullProgress::Done { digest } => Progress::Done(digest),
                };
                // A client that went away fails the next send; the pull goes on.
                let _ = send(out, &Reply::Progress(p));
            };
            let i = pull::pull(store, &reference, &pull::Access::default(), &mut cb)
                .map_err(|e| format!("pulling {reference}: {}", chain(&e)))?;
            for n in i.names {
                lines.push(format!("{}\t{}", n.familiar(), i.manifest_digest));
            }
        }
        Request::Ls => {
            lines.push(format!("{:<40} {:<19} {:>10}", "NAME", "DIGEST", "SIZE"));
            for i in store.list().map_err(|e| chain(&e))? {
                let short = i
                    .manifest_digest
                    .get(..19)
                    .unwrap_or(&i.manifest_digest)
                    .to_string();
                lines.push(format!(
                    "{:<40} {:<19} {:>10}",
                    i.reference.familiar(),
                    short,
                    i.size
                ));
            }
        }
        Request::Rm { name } => {
            let r = store
                .remove(&name)
                .map_err(|e| format!("removing {name}: {}", chain(&e)))?;
            lines.push(format!("removed {}", r.familiar()));
        }
        Request::Prune => {
            for r in store.prune().map_err(|e| chain(&e))? {
                lines.push(format!("removed {}", r.familiar()));
            }
        }
    }
    for l in lines {
        send(out, &Reply::Line(l)).map_err(|e| e.to_string())?;
    }
    Ok(())
}
