//! Crypto-shred: overwrite the LUKS2 headers and keyslot area in place, then delete.
//!
//! The volume key exists on disk only inside keyslot 0 (AF-split, 4000 stripes);
//! once every byte before the data segment is overwritten with random data and
//! synced, the ciphertext left in freed blocks cannot be decrypted.

use std::fs::OpenOptions;
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
    let mut off = 0;
    while off < area {
        let n = (area - off).min(buf.len() as u64) as usize;
        openssl::rand::rand_bytes(&mut buf[..n])?;
        file.write_all_at(&buf[..n], off).map_err(io)?;
        off += n as u64;
    }
    file.sync_data().map_err(io)?;
    drop(file);
    std::fs::remove_file(image).map_err(io)?;
    Ok(())
}
