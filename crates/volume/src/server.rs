//! The serving process: holds the volume key and serves the plaintext over FUSE
//! until it is told to stop.
//!
//! It is started by [`crate::mount`] as `EXE ARGS... --image I --runtime-dir R
//! [--plain]`, reads the passphrase from stdin (to EOF), and writes exactly one
//! line to stdout: `ready blank`, `ready data`, or `error: MESSAGE`. Then it
//! points stdout at /dev/null and waits for SIGTERM/SIGINT/SIGHUP, or for the
//! FUSE session to end, unmounts, zeroizes the key and exits.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fusefs::VolumeFs;
use crate::key::{Passphrase, PassphraseError};
use crate::luks::{self, OpenError};
use crate::sys;

/// What the serving process is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    /// The image (LUKS2 container, or raw ext4 image when `plain`).
    pub image: PathBuf,
    /// Private directory for this volume (holds the FUSE mount point `fuse/`).
    pub runtime_dir: PathBuf,
    /// Serve the image unencrypted.
    pub plain: bool,
    /// Bytes of the host file system that writes into the image's holes
    /// must leave free (0: none); see [`VolumeFs::with_reserve`].
    pub reserve: u64,
}

/// Errors of the serving process (sent as the readiness line).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Hardening the process failed.
    #[error("cannot harden server process ({what}): {source}")]
    Harden {
        /// Which call.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// No passphrase on stdin.
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    /// The volume does not open.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The image is not usable.
    #[error("image: {0}")]
    Image(std::io::Error),
    /// FUSE mount failed.
    #[error("fuse: {0}")]
    Fuse(std::io::Error),
}

/// Path of the FUSE mount point inside a runtime dir.
pub fn fuse_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("fuse")
}

/// Number of FUSE event-loop threads. Each thread carries one request from
/// pread to reply, so the count is the number of backing reads in flight,
/// less those whose thread is decrypting: with 4 (2 per CPU) a sequential
/// read on an encrypted volume ran at ~0.75 of a plain one with both CPUs
/// two-thirds idle; with 12, ~1.0 and 40 % faster (docs/volume-engine.md).
/// A thread costs ~2-4 MB resident (buffers touched on demand).
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(12)
        .clamp(12, 32)
}

/// Makes this process fit to hold a key on the I/O path of a loop device.
fn harden() -> Result<(), ServeError> {
    let h = |what| move |source| ServeError::Harden { what, source };
    sys::set_not_dumpable().map_err(h("PR_SET_DUMPABLE"))?;
    sys::disable_core_dumps().map_err(h("RLIMIT_CORE"))?;
    // Allocations of this process never wait for I/O: the I/O may be our own.
    // It needs CAP_SYS_RESOURCE, which some containers drop; the server then
    // still avoids the deadlock (O_DIRECT backing I/O dirties no page cache,
    // all memory locked), so it says so in its log and goes on.
    if let Err(e) = sys::set_io_flusher() {
        eprintln!(
            "ferry-volume: PR_SET_IO_FLUSHER unavailable ({e}); relying on O_DIRECT and mlockall"
        );
    }
    // No page of this process (key, buffers, code) needs I/O to come back.
    sys::lock_all_memory().map_err(h("mlockall"))?;
    sys::setsid();
    sys::block_termination_signals().map_err(h("sigmask"))?;
    Ok(())
}

/// Runs the serving process. Returns after a clean stop; errors before
/// readiness have already been reported on stdout when this returns `Err`.
pub fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    let r = start(args);
    let mut out = std::io::stdout().lock();
    let (session, ready) = match r {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            let _ = out.flush();
            return Err(e);
        }
    };
    let _ = writeln!(out, "ready {ready}");
    let _ = out.flush();
    drop(out);
    let _ = sys::stdout_to_devnull();
    run(session)
}

type Session = fuser::Session<VolumeFs>;

fn start(args: &ServeArgs) -> Result<(Session, &'static str), ServeError> {
    harden()?;
    let (key, data_offset, size) = if args.plain {
        let len = std::fs::metadata(&args.image)
            .map_err(ServeError::Image)?
            .len();
        (None, 0, len - len % crate::cipher::SECTOR as u64)
    } else {
        let pass = Passphrase::read_from(std::fs::File::from(
            sys::dup_stdin().map_err(ServeError::Image)?,
        ))?;
        let opened = luks::open(&args.image, &pass)?;
        drop(pass);
        (
            Some(Arc::new(opened.key)),
            opened.data_offset,
            opened.data_size,
        )
    };
    let backing = open_backing(&args.image).map_err(ServeError::Image)?;
    let blank = sys::seek_data(backing.as_fd(), data_offset)
        .map_err(ServeError::Image)?
        .is_none_or(|d| d >= data_offset + size);
    let fs = VolumeFs::new(backing, data_offset, size, key)
        .with_reserve(args.reserve)
        .with_metadata_map(args.runtime_dir.join(crate::mount::METADATA_MAP));
    let config = {
        let mut c = fuser::Config::default();
        c.mount_options = vec![
            fuser::MountOption::FSName("ferry-volume".into()),
            fuser::MountOption::Subtype("ferry".into()),
            fuser::MountOption::NoDev,
            fuser::MountOption::NoSuid,
            fuser::MountOption::NoExec,
        ];
        c.n_threads = Some(threads());
        c.clone_fd = true;
        c
    };
    let session =
        fuser::Session::new(fs, fuse_dir(&args.runtime_dir), &config).map_err(ServeError::Fuse)?;
    Ok((session, if blank { "blank" } else { "data" }))
}

/// Opens the image with O_DIRECT: the server then never dirties page cache,
/// so it is never throttled behind writeback that only it can complete, and
/// ciphertext is not cached twice. Falls back to buffered I/O where the
/// filesystem refuses O_DIRECT.
fn open_backing(image: &Path) -> std::io::Result<std::fs::File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    match o.clone().custom_flags(libc::O_DIRECT).open(image) {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!(
                "ferry-volume: O_DIRECT refused on {}; using buffered I/O",
                image.display()
            );
            o.open(image)
        }
        Err(e) => Err(e),
    }
}

fn run(mut session: Session) -> Result<(), ServeError> {
    let mut unmounter = session.unmount_callable();
    let me = std::process::id() as i32;
    let loop_thread = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            let r = session.run();
            // The session ended by itself (unmounted from outside): wake main.
            let _ = sys::kill(me, libc::SIGTERM);
            r
        })
        .map_err(ServeError::Fuse)?;
    let _ = sys::wait_termination();
    let _ = unmounter.unmount();
    let r = loop_thread
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("fuse session panicked")));
    // The session (and with it the key and every cipher context) is dropped by now.
    r.map_err(ServeError::Fuse)
}
