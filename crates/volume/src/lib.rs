//! ferry-volume: the encrypted ephemeral volume engine.
//!
//! A volume is a sparse file holding a standard LUKS2 container
//! (aes-xts-plain64, 512-bit key, 4096-byte sectors). On hosts without
//! dm-crypt a userspace server process holds the volume key and serves the
//! plaintext of the data segment as one file over FUSE; a loop device with
//! direct I/O sits on that file and ext4 on the loop device. See
//! docs/volume-format.md and docs/volume-engine.md.
//!
//! The API the task runtime calls: [`format`] (with the KMS token),
//! [`mount`] (returns a [`MountHandle`] that unmounts), [`shred`], and
//! [`serve`] for the re-executed serving process.
//!
//! Modules (each along one trust or kernel boundary):
//! - [`key`]: passphrase and volume key types (zeroize, mlock, redacted Debug).
//! - [`size`]: size parsing and the 1..=200 GiB range.
//! - [`luks`]: LUKS2 header and keyslots via libcryptsetup (format, open, token).
//! - [`cipher`]: the AES-256-XTS sector cipher (keyed once per thread): our
//!   VAES engine where the CPU has it, OpenSSL otherwise.
//! - [`fusefs`]: the FUSE filesystem serving the plaintext file.
//! - [`server`]: the serving process (hardening, FUSE session, stop on signal).
//! - [`loopdev`]: loop devices (LOOP_CONFIGURE, direct I/O, autoclear).
//! - [`mount`]: mount/unmount orchestration (server, loop, mkfs, ext4).
//! - [`shred`]: crypto-shred (overwrite header and keyslots, delete).
//! - [`token`]: token 0 (`ferry-kms`), typed.
//! - [`mountinfo`]: the one reader of /proc/self/mountinfo.
//! - `sys`: the only place with `unsafe` for kernel calls (prctl, mlock, ioctls, mount).
//! - `vaes`: AES-256-XTS with VAES/AVX2 intrinsics (the only other `unsafe`:
//!   vector loads/stores and calls of CPU-feature-gated functions).

pub mod cipher;
pub mod ext4;
pub mod fusefs;
pub mod key;
pub mod loopdev;
pub mod luks;
pub mod mount;
pub mod mountinfo;
pub mod server;
pub mod shred;
pub mod size;
mod sys;
pub mod token;
#[cfg(target_arch = "x86_64")]
mod vaes;

pub use key::{Passphrase, VolumeKey};
pub use luks::{FormatError, FormatOptions, OpenError, format, read_token};
pub use mount::{
    MountError, MountHandle, MountOptions, RUNTIME_ROOT, ServerCommand, UnmountError, mount,
    release, server_pid, unmount,
};
pub use server::{ServeArgs, ServeError, serve};
pub use shred::{ShredError, shred};
pub use size::{SizeError, parse_size};
pub use token::{KmsToken, TokenError};

/// Creates a sparse plain (unencrypted) image of `size` bytes, for platform
/// version 1.3.0 and the benchmark baseline; ext4 is made on first mount.
pub fn format_plain(image: &std::path::Path, size: u64) -> Result<(), FormatError> {
    size::check_size(size)?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(image)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                FormatError::Exists(image.display().to_string())
            } else {
                FormatError::Create(e)
            }
        })?;
    f.set_len(size).map_err(FormatError::Create)
}
