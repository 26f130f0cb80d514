//! The FUSE filesystem: a root directory holding one file, `volume`, whose
//! bytes are the plaintext of the image's data segment.
//!
//! fuser runs several event-loop threads (each with its own cloned
//! /dev/fuse fd); every callback does its I/O on the thread it arrived on,
//! with that thread's own cipher contexts and buffers, using pread/pwrite on
//! the shared backing file. All-zero ciphertext sectors (holes) read as zeros;
//! PUNCH_HOLE / ZERO_RANGE punch holes in the backing file.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};

use crate::cipher::{SECTOR, SectorCipher, is_zero};
use crate::key::VolumeKey;
use crate::sys::{self, AlignedBuf};

/// Name of the single file in the FUSE root.
pub const FILE_NAME: &str = "volume";
/// Largest FUSE write (and read) request: 1 MiB.
pub const MAX_IO: u32 = 1 << 20;

const ROOT: INodeNo = INodeNo(1);
const FILE: INodeNo = INodeNo(2);
const TTL: Duration = Duration::from_secs(3600);

/// The plaintext view of one volume.
pub struct VolumeFs {
    backing: File,
    data_offset: u64,
    size: u64,
    /// `None` serves the image as is (plain mode, same path without the cipher).
    key: Option<Arc<VolumeKey>>,
    started: SystemTime,
    /// Bytes of the host file system that writes into holes must leave
    /// free (0: no limit). See [`VolumeFs::with_reserve`].
    reserve: u64,
    /// Backing ranges `[start, end)` this server allocated (fallocate):
    /// writes there need no host space, though SEEK_HOLE reports the
    /// host's unwritten extents as holes.
    allocated: std::sync::Mutex<Vec<(u64, u64)>>,
    /// Where the mount writes the ext4 metadata map, and the map once read.
    metadata: Option<(std::path::PathBuf, std::sync::OnceLock<Ranges>)>,
}

/// Byte ranges `[start, end)`.
type Ranges = Vec<(u64, u64)>;

/// Writes up to this size that would allocate may go on until half the
/// reserve is used: ext4's metadata (bitmaps, inode table, extent and
/// directory blocks) is written a block or a few at a time, and a failed
/// metadata write aborts the journal, whereas a failed data write is only
/// the ENOSPC the task should see.
const SMALL_WRITE: usize = 16 << 10;

/// Per-thread state: cipher contexts (keyed once) and reusable buffers.
struct Worker {
    cipher: Option<SectorCipher>,
    /// Backing-file side (ciphertext), 4096-aligned for O_DIRECT; reads
    /// decrypt in place in it.
    a: AlignedBuf,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

impl VolumeFs {
    /// Serves `size` bytes at `data_offset` of `backing`, decrypted with `key` if given.
    pub fn new(backing: File, data_offset: u64, size: u64, key: Option<Arc<VolumeKey>>) -> Self {
        VolumeFs {
            backing,
            data_offset,
            size,
            key,
            started: SystemTime::now(),
            reserve: 0,
            allocated: std::sync::Mutex::new(Vec::new()),
            metadata: None,
        }
    }

    /// Keeps `reserve` bytes of the host file system free for ferry's own
    /// state: a write or allocation that would fill a hole in the backing
    /// file fails with ENOSPC once less than that is left (less than half of
    /// it for small writes, which are mostly ext4 metadata). Overwriting
    /// allocated blocks always works (ext4 overwrites in place).
    pub fn with_reserve(mut self, reserve: u64) -> Self {
        self.reserve = reserve;
        self
    }

    /// Writes into the byte ranges listed in `path` (see
    /// [`crate::mount::METADATA_MAP`], read when first needed) are ext4
    /// metadata: like small writes, they may use the lower half of the
    /// reserve.
    pub fn with_metadata_map(mut self, path: std::path::PathBuf) -> Self {
        self.metadata = Some((path, std::sync::OnceLock::new()));
        self
    }

    /// Whether plaintext `[at, at + len)` lies in the ext4 metadata map.
    fn is_metadata(&self, at: u64, len: u64) -> bool {
        let Some((path, map)) = &self.metadata else {
            return false;
        };
        let ranges = match map.get() {
            Some(r) => r,
            None => {
                // Not written yet (mkfs still running): look again next time.
                let Ok(text) = std::fs::read_to_string(path) else {
                    return false;
                };
                map.get_or_init(|| {
                    text.lines()
                        .filter_map(|l| {
                            let (a, b) = l.split_once(' ')?;
                            Some((a.parse().ok()?, b.trim().parse().ok()?))
                        })
                        .collect()
                })
            }
        };
        let end = at.saturating_add(len);
        ranges.iter().any(|(s, e)| *s <= at && end <= *e)
    }

    /// Refuses (ENOSPC) a write of `len` bytes at backing offset `at` that
    /// would allocate while the host is within its reserve.
    fn check_room(&self, at: u64, len: u64) -> Result<(), Errno> {
        if self.reserve == 0 {
            return Ok(());
        }
        let fd = self.backing.as_fd();
        let (free, _) = sys::fs_space(fd).map_err(Errno::from)?;
        let floor = if len <= SMALL_WRITE as u64
            || self.is_metadata(at.saturating_sub(self.data_offset), len)
        {
            self.reserve / 2
        } else {
            self.reserve
        };
        if free >= floor.saturating_add(len) {
            return Ok(());
        }
        // Short of room: only a write over blocks that are all allocated
        // (no hole in the range, or a range this server allocated) needs none.
        let end = at.saturating_add(len);
        if self
            .allocated
            .lock()
            .is_ok_and(|a| a.iter().any(|(s, e)| *s <= at && end <= *e))
        {
            return Ok(());
        }
        match sys::seek_hole(fd, at) {
            Ok(hole) if hole >= at.saturating_add(len) => Ok(()),
            _ => Err(Errno::from_i32(libc::ENOSPC)),
        }
    }

    fn attr(&self, ino: INodeNo) -> FileAttr {
        let (kind, perm, size, nlink) = if ino == ROOT {
            (FileType::Directory, 0o700, 0, 2)
        } else {
            (FileType::RegularFile, 0o600, self.size, 1)
        };
        FileAttr {
            ino,
            size,
            blocks: size / 512,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: SECTOR as u32,
            flags: 0,
        }
    }

    /// Runs `f` with this thread's worker, creating it on first use.
    fn with_worker<R>(&self, f: impl FnOnce(&mut Worker) -> Result<R, Errno>) -> Result<R, Errno> {
        WORKER.with(|w| {
            let mut w = w.borrow_mut();
            if w.is_none() {
                let cipher = match &self.key {
                    Some(k) => Some(SectorCipher::new(k).map_err(|_| Errno::EIO)?),
                    None => None,
                };
                *w = Some(Worker {
                    cipher,
                    a: AlignedBuf::empty(),
                });
            }
            match w.as_mut() {
                Some(worker) => f(worker),
                None => Err(Errno::EIO),
            }
        })
    }

    fn do_read(&self, offset: u64, size: u32, reply: ReplyData) {
        let end = offset.saturating_add(u64::from(size)).min(self.size);
        if offset >= end {
            reply.data(&[]);
            return;
        }
        let start = offset - offset % SECTOR as u64;
        let aend = end.div_ceil(SECTOR as u64) * SECTOR as u64;
        let len = (aend - start) as usize;
        let mut reply = Some(reply);
        let r = self.with_worker(|w| {
            w.a.ensure(len);
            self.backing
                .read_exact_at(w.a.slice_mut(len), self.data_offset + start)
                .map_err(Errno::from)?;
            let buf = w.a.slice_mut(len);
            if let Some(c) = w.cipher.as_mut() {
                let first = start / SECTOR as u64;
                for (i, sector) in buf.chunks_exact_mut(SECTOR).enumerate() {
                    // A hole (zero ciphertext) reads as plaintext zeros: leave it.
                    if !is_zero(sector) {
                        c.decrypt_in_place(first + i as u64, sector)
                            .map_err(|_| Errno::EIO)?;
                    }
                }
            }
            let skip = (offset - start) as usize;
            if let Some(rep) = reply.take() {
                rep.data(&buf[skip..skip + (end - offset) as usize]);
            }
            Ok(())
        });
        if let (Err(e), Some(rep)) = (r, reply.take()) {
            rep.error(e);
        }
    }

    fn do_write(&self, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        if !offset.is_multiple_of(SECTOR as u64) || !data.len().is_multiple_of(SECTOR) {
            // The loop device (4096-byte logical blocks) only sends whole sectors.
            return Err(Errno::from_i32(libc::EINVAL));
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(Errno::from_i32(libc::EFBIG))?;
        if end > self.size {
            return Err(Errno::from_i32(libc::ENOSPC));
        }
        self.check_room(self.data_offset + offset, data.len() as u64)?;
        self.with_worker(|w| {
            let n = data.len();
            w.a.ensure(n);
            match w.cipher.as_mut() {
                // The same copy into an aligned buffer that encryption does, so
                // plain mode measures exactly the path minus the cipher.
                None => w.a.slice_mut(n).copy_from_slice(data),
                Some(c) => c
                    .encrypt(offset / SECTOR as u64, data, w.a.slice_mut(n))
                    .map_err(|_| Errno::EIO)?,
            }
            self.backing
                .write_all_at(w.a.slice(n), self.data_offset + offset)
                .map_err(Errno::from)?;
            Ok(data.len() as u32)
        })
    }

    fn do_fallocate(&self, offset: u64, length: u64, mode: i32) -> Result<(), Errno> {
        let end = offset.saturating_add(length);
        if end > self.size {
            return Err(Errno::from_i32(libc::ENOSPC));
        }
        let fd = self.backing.as_fd();
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
            // A hole is a run of zero ciphertext, which reads as plaintext zeros;
            // a partial sector cannot be zeroed that way, so callers fall back.
            if !offset.is_multiple_of(SECTOR as u64) || !length.is_multiple_of(SECTOR as u64) {
                return Err(Errno::from_i32(libc::EOPNOTSUPP));
            }
            let (at, end) = (self.data_offset + offset, self.data_offset + end);
            // Punched blocks are holes again: forget any allocation they overlap.
            if let Ok(mut a) = self.allocated.lock() {
                a.retain(|(s, e)| *e <= at || end <= *s);
            }
            return sys::punch_hole(fd, at, length).map_err(Errno::from);
        }
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(Errno::from_i32(libc::EOPNOTSUPP));
        }
        self.check_room(self.data_offset + offset, length)?;
        // Plain allocation: allocated-but-unwritten blocks read as zeros, and
        // zero ciphertext sectors read as plaintext zeros, so this stays correct.
        let at = self.data_offset + offset;
        sys::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, at, length).map_err(Errno::from)?;
        if let Ok(mut a) = self.allocated.lock() {
            // Few and large (the journal): a list is enough.
            if a.len() < 64 {
                a.push((at, at.saturating_add(length)));
            }
        }
        Ok(())
    }
}

impl Filesystem for VolumeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_IO);
        // Let the loop device's asynchronous direct I/O keep many requests in flight.
        let _ = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO);
        let _ = config.set_max_background(128);
        let _ = config.set_congestion_threshold(96);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == FILE_NAME {
            reply.entry(&TTL, &self.attr(FILE), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == ROOT || ino == FILE {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The volume has a fixed size; times and owners are not stored.
        match size {
            Some(s) if s != self.size => reply.error(Errno::EPERM),
            _ => reply.attr(&TTL, &self.attr(ino)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino != FILE {
            reply.error(Errno::EISDIR);
            return;
        }
        // No page cache in the server's kernel path (the loop device is O_DIRECT
        // anyway), and concurrent direct writes instead of one inode lock.
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.do_read(offset, size, reply);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.do_fallocate(offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.backing.sync_data() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.into()),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (FILE, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
