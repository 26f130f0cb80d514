//! Every kernel call that needs `unsafe`, each behind a small safe function.
//!
//! Nothing here knows about volumes; callers give plain fds, paths and numbers.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `prctl(PR_SET_DUMPABLE, 0)`: no core dumps, no ptrace by non-root, /proc/PID/mem closed.
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes plain integer arguments and touches no memory of ours.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(drop)
}

/// linux/prctl.h (not in the libc crate yet).
const PR_SET_IO_FLUSHER: libc::c_int = 57;

/// `prctl(PR_SET_IO_FLUSHER, 1)`: this task (and threads it creates later)
/// allocate memory with PF_MEMALLOC_NOIO, so reclaim never waits on our own I/O.
pub fn set_io_flusher() -> io::Result<()> {
    // SAFETY: PR_SET_IO_FLUSHER takes plain integer arguments and touches no memory of ours.
    cvt(unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) }).map(drop)
}

/// `setrlimit(RLIMIT_CORE, 0)`.
pub fn disable_core_dumps() -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) }).map(drop)
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: no page this process
/// has touched is ever paged out. `MCL_ONFAULT` locks pages as they are first
/// touched instead of populating every mapping up front: fuser gives each
/// event-loop thread a 16 MiB receive buffer of which only max_write (1 MiB)
/// plus a header is ever used, and populating it all cost ~17 MiB of locked
/// memory per thread (~100 MB per volume with 4 threads).
pub fn lock_all_memory() -> io::Result<()> {
    // SAFETY: mlockall takes only flags.
    cvt(unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) })
        .map(drop)
}

/// `mlock` of one buffer (key memory), so it never reaches swap.
pub fn mlock(buf: &[u8]) -> io::Result<()> {
    // SAFETY: the range is a live borrowed slice; mlock does not write to it.
    cvt(unsafe { libc::mlock(buf.as_ptr().cast(), buf.len()) }).map(drop)
}

/// `munlock` of a buffer locked with [`mlock`].
pub fn munlock(buf: &[u8]) {
    // SAFETY: the range is a live borrowed slice; munlock does not touch its contents.
    // Failure only means it was not locked, which is harmless here.
    unsafe { libc::munlock(buf.as_ptr().cast(), buf.len()) };
}

/// `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let (off, len) = (to_off(offset)?, to_off(len)?);
    // SAFETY: plain integer arguments on a valid borrowed fd.
    cvt(unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
    })
    .map(drop)
}

/// `fallocate(mode)` for other modes (plain allocation, zero range).
pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let (off, len) = (to_off(offset)?, to_off(len)?);
    // SAFETY: plain integer arguments on a valid borrowed fd.
    cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, len) }).map(drop)
}

fn to_off(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `lseek(SEEK_HOLE)`: the first hole byte at or after `offset` (the end
/// of the file counts as a hole).
pub fn seek_hole(fd: BorrowedFd<'_>, offset: u64) -> io::Result<u64> {
    let off = to_off(offset)?;
    // SAFETY: lseek on a valid borrowed fd with integer arguments.
    let rc = unsafe { libc::lseek(fd.as_raw_fd(), off, libc::SEEK_HOLE) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as u64)
}

/// Bytes an unprivileged writer may still allocate on `fd`'s file system
/// (`f_bavail`), and the file system's size.
pub fn fs_space(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the struct it is given on success; it is only
    // read after a zero return.
    let rc = unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatvfs returned 0, so the struct is initialized.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize;
    Ok((
        st.f_bavail.saturating_mul(frsize),
        st.f_blocks.saturating_mul(frsize),
    ))
}

/// `lseek(SEEK_DATA)`: the first data byte at or after `offset`, `None` if only holes follow.
pub fn seek_data(fd: BorrowedFd<'_>, offset: u64) -> io::Result<Option<u64>> {
    let off = to_off(offset)?;
    // SAFETY: lseek on a valid borrowed fd with integer arguments.
    let rc = unsafe { libc::lseek(fd.as_raw_fd(), off, libc::SEEK_DATA) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(rc as u64))
}

/// The kernel's `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// The kernel's `struct loop_config` (linux/loop.h).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// Detach the loop device when its last opener closes it.
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// Loop I/O goes to the backing file with O_DIRECT (no second page cache).
pub const LO_FLAGS_DIRECT_IO: u32 = 16;

/// `LOOP_CTL_GET_FREE` on /dev/loop-control: the number of a free loop device.
pub fn loop_get_free(ctl: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns an int.
    let n = cvt(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) })?;
    Ok(n as u32)
}

/// `LOOP_CONFIGURE`: binds `backing` to the loop device in one call.
pub fn loop_configure(
    dev: BorrowedFd<'_>,
    backing: BorrowedFd<'_>,
    block_size: u32,
    flags: u32,
    name: &[u8],
) -> io::Result<()> {
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let n = name.len().min(63);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);
    let cfg = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size,
        info,
        reserved: [0; 8],
    };
    // SAFETY: `cfg` matches the kernel's struct loop_config layout and lives across the call;
    // the kernel only reads it.
    cvt(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) })
        .map(drop)
}

/// `mount(2)`.
pub fn mount(source: &Path, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
    let (s, t) = (cstr(source.as_os_str())?, cstr(target.as_os_str())?);
    let f = cstr(OsStr::new(fstype))?;
    let d = cstr(OsStr::new(data))?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    cvt(unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            libc::MS_NODEV | libc::MS_NOSUID,
            d.as_ptr().cast(),
        )
    })
    .map(drop)
}

/// `umount2(2)`; `detach` makes it lazy.
pub fn umount(target: &Path, detach: bool) -> io::Result<()> {
    let t = cstr(target.as_os_str())?;
    let flags = if detach { libc::MNT_DETACH } else { 0 };
    // SAFETY: `t` is a NUL-terminated string that outlives the call.
    cvt(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes integers only.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread (and threads spawned later),
/// so that [`wait_termination`] can take them synchronously.
pub fn block_termination_signals() -> io::Result<()> {
    let set = termination_set()?;
    // SAFETY: `set` is an initialised sigset; the old-mask pointer may be null.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits for one of the signals blocked by [`block_termination_signals`].
pub fn wait_termination() -> io::Result<i32> {
    let set = termination_set()?;
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}

fn termination_set() -> io::Result<libc::sigset_t> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset only writes into it.
    unsafe {
        cvt(libc::sigemptyset(set.as_mut_ptr()))?;
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            cvt(libc::sigaddset(set.as_mut_ptr(), s))?;
        }
        Ok(set.assume_init())
    }
}

/// Points fd 1 at /dev/null (after the readiness line went out), so the parent's
/// pipe reaches EOF while this process keeps running.
pub fn stdout_to_devnull() -> io::Result<()> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // SAFETY: dup2 on two valid fds; fd 1 is replaced atomically.
    cvt(unsafe { libc::dup2(null.as_raw_fd(), 1) }).map(drop)
}

/// Duplicates stdin as an owned fd (the passphrase pipe), leaving fd 0 open.
pub fn dup_stdin() -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fd 0 returns a fresh fd that we own.
    let fd = cvt(unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `fd` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsid()`: leave the caller's session so its terminal signals do not reach us.
pub fn setsid() {
    // SAFETY: setsid takes no arguments; failing (already a group leader) is harmless.
    unsafe { libc::setsid() };
}

/// A zeroed heap buffer aligned to 4096 bytes, as O_DIRECT needs.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    const ALIGN: usize = 4096;

    /// An empty buffer (no allocation).
    pub const fn empty() -> Self {
        AlignedBuf {
            ptr: std::ptr::NonNull::dangling(),
            len: 0,
        }
    }

    /// Makes the buffer at least `len` bytes (contents are not kept).
    pub fn ensure(&mut self, len: usize) {
        if self.len >= len {
            return;
        }
        let len = len.div_ceil(Self::ALIGN) * Self::ALIGN;
        let Ok(layout) = std::alloc::Layout::from_size_align(len, Self::ALIGN) else {
            std::process::abort();
        };
        // SAFETY: `layout` has non-zero size (len >= 1 rounded up to 4096).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(p) = std::ptr::NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout);
        };
        *self = AlignedBuf { ptr: p, len };
    }

    /// The first `n` bytes (n <= the ensured length).
    pub fn slice(&self, n: usize) -> &[u8] {
        let n = n.min(self.len);
        // SAFETY: ptr is valid for `self.len` initialised bytes (alloc_zeroed) and n <= len.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), n) }
    }

    /// The first `n` bytes, mutable.
    pub fn slice_mut(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(self.len);
        // SAFETY: as in `slice`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), n) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // Plaintext passes through these buffers: wipe before freeing.
        zeroize::Zeroize::zeroize(self.slice_mut(self.len));
        if let Ok(layout) = std::alloc::Layout::from_size_align(self.len, Self::ALIGN) {
            // SAFETY: allocated in `ensure` with exactly this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}
