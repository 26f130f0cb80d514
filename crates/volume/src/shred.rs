//! Crypto-shred: overwrite the LUKS2 headers and keyslot area in place, then delete.
//!
//! The volume key exists on disk only inside keyslot 0 (AF-split, 4000 stripes);
//! once every byte before the data segment is overwritten with random data and
//! synced, the ciphertext left in freed blocks cannot be decrypted.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::luks::{self, HeaderKind, WIPE_FALLBACK};

/// Errors shredding.
#[derive(Debug, thiserror::Error)]
pub enum ShredError {
    /// The image could not be opened, written or removed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The image.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No LUKS header: refusing to delete a file that is not a ferry volume.
    #[error("not a LUKS2 volume (refusing to shred)")]
    NotLuks,
    /// Randomness failed.
    #[error("openssl: {0}")]
    Rand(#[from] openssl::error::ErrorStack),
}

/// Wipes the header area of `image` and deletes it.
pub fn shred(image: &Path) -> Result<(), ShredError> {
    let io = |source| ShredError::Io {
        path: image.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(io)?;
    if luks::header_kind(&file).map_err(io)? == HeaderKind::None {
        return Err(ShredError::NotLuks);
    }
    let len = file.metadata().map_err(io)?.len();
    // A readable header tells exactly where data starts; a damaged one gets the
    // 16 MiB, which covers both headers and all keyslots of any default layout.
    let area = match luks::data_offset(image) {
        Ok(off) if off > 0 => off,
        _ => WIPE_FALLBACK,
    }
    .min(len);
    let mut buf = vec![0u8; 1 << 20];
    // Only written ranges hold anything: holes read as zeros and have no
    // blocks. Overwriting written blocks in place needs no free space, so
    // this works on a full disk too (where filling the holes would not).
    for (start, end) in written_ranges(&file, area).map_err(io)? {
        let mut off = start;
        while off < end {
            let n = (end - off).min(buf.len() as u64) as usize;
            openssl::rand::rand_bytes(&mut buf[..n])?;
            if let Err(e) = file.write_all_at(&buf[..n], off) {
                if e.raw_os_error() != Some(libc::ENOSPC) {
                    return Err(io(e));
                }
                // A copy-on-write file system needs space even to
                // overwrite: drop the blocks instead (they are freed, not
                // overwritten, there; see docs/volume-engine.md).
                crate::sys::punch_hole(file.as_fd(), off, end - off).map_err(io)?;
                break;
            }
            off += n as u64;
        }
    }
    file.sync_data().map_err(io)?;
    drop(file);
    std::fs::remove_file(image).map_err(io)?;
    Ok(())
}

/// The `[start, end)` ranges of `file` below `limit` that hold data.
fn written_ranges(file: &std::fs::File, limit: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let fd = file.as_fd();
    let mut out = Vec::new();
    let mut off = 0;
    while off < limit {
        let Some(start) = crate::sys::seek_data(fd, off)? else {
            break;
        };
        if start >= limit {
            break;
        }
        let end = crate::sys::seek_hole(fd, start)?.min(limit);
        out.push((start, end));
        off = end;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_written_ranges_are_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 0).unwrap();
        f.write_all_at(&[2u8; 8192], 1 << 20).unwrap();
        f.write_all_at(&[3u8; 4096], 6 << 20).unwrap();
        f.sync_all().unwrap();
        let r = written_ranges(&f, 4 << 20).unwrap();
        assert_eq!(r, vec![(0, 4096), ((1 << 20), (1 << 20) + 8192)]);
    }
}
