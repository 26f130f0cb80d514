//! Loop devices: attach a file with direct I/O, 4096-byte logical blocks and
//! autoclear (the device detaches itself when its last user closes it).

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::sys;

/// An attached loop device, held open by this value.
#[derive(Debug)]
pub struct LoopDevice {
    file: File,
    number: u32,
}

/// Errors attaching.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// A kernel call failed.
    #[error("loop device: {0}")]
    Io(#[from] std::io::Error),
    /// Other processes kept taking the free device.
    #[error("loop device: no free device after retries")]
    Busy,
}

impl LoopDevice {
    /// Attaches `backing` (opened read-write) to a free loop device.
    pub fn attach(backing: &Path, block_size: u32) -> Result<Self, LoopError> {
        let data = OpenOptions::new().read(true).write(true).open(backing)?;
        let ctl = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/loop-control")?;
        let name = backing.as_os_str().as_encoded_bytes();
        // Other processes on this host attach loop devices too: the free one
        // we were given may be taken before we configure it, so retry.
        for _ in 0..32 {
            let n = sys::loop_get_free(ctl.as_fd())?;
            let dev = OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/dev/loop{n}"))?;
            match sys::loop_configure(
                dev.as_fd(),
                data.as_fd(),
                block_size,
                sys::LO_FLAGS_AUTOCLEAR | sys::LO_FLAGS_DIRECT_IO,
                name,
            ) {
                Ok(()) => {
                    return Ok(LoopDevice {
                        file: dev,
                        number: n,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LoopError::Busy)
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.number))
    }

    /// `loopN`.
    pub fn name(&self) -> String {
        format!("loop{}", self.number)
    }

    /// The open device (for reading the superblock).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// The backing file of `/dev/loopN` (by name `loopN`), if attached.
pub fn backing_file(name: &str) -> Option<PathBuf> {
    let s = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(s.trim_end_matches('\n')))
}

/// Whether the loop device uses direct I/O.
pub fn direct_io(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/block/{name}/loop/dio"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}
