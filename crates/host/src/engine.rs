//! The volume engine behind a trait, youki-style, so that what host storage
//! decides (what is created, mounted, shredded and released, in which
//! order, and what happens to keys on each failure) is unit-tested with a
//! fake. [`Luks2`] is the real engine: ferry-volume's LUKS2 volumes served
//! over FUSE, a loop device and ext4.

use std::path::{Path, PathBuf};

use ferry_volume::{FormatOptions, KmsToken, MountHandle, MountOptions, Passphrase, ServerCommand};

/// An engine failure; its text goes into a task's `stoppedReason`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError(e.to_string())
}

/// A mounted volume.
pub trait Mounted: Send {
    /// Where its ext4 is mounted.
    fn target(&self) -> &Path;
    /// Unmounts it and stops its serving process (which holds its key).
    fn unmount(self: Box<Self>) -> Result<(), EngineError>;
    /// The serving process, watched so that its death stops the task.
    fn server_pid(&self) -> Option<u32> {
        None
    }

    /// Forgets it, leaving it mounted and served (a server that exits
    /// without stopping its tasks; the next one re-adopts the mount).
    fn leave(self: Box<Self>) {
        std::mem::forget(self);
    }
}

/// Volumes on the host.
pub trait VolumeEngine: Send + Sync {
    /// A new encrypted volume of `size` bytes whose keyslot 0 opens with
    /// `passphrase`, with `token` as token 0.
    fn format(
        &self,
        image: &Path,
        size: u64,
        passphrase: &Passphrase,
        token: &KmsToken,
    ) -> Result<(), EngineError>;
    /// A new plain (platform version 1.3.0) volume.
    fn format_plain(&self, image: &Path, size: u64) -> Result<(), EngineError>;
    /// Mounts `image` at `target` (encrypted when a passphrase is given).
    fn mount(
        &self,
        image: &Path,
        target: &Path,
        passphrase: Option<&Passphrase>,
    ) -> Result<Box<dyn Mounted>, EngineError>;
    /// Unmounts a volume a previous server mounted at `target`.
    fn unmount(&self, target: &Path) -> Result<(), EngineError>;
    /// Crypto-shreds an encrypted volume (header and keyslots wiped, file deleted).
    fn shred(&self, image: &Path) -> Result<(), EngineError>;
    /// Token 0 of an encrypted volume.
    fn read_token(&self, image: &Path) -> Result<KmsToken, EngineError>;
}

/// ferry-volume's engine: each mount is served by `exe volume serve`.
pub struct Luks2 {
    server: ServerCommand,
    runtime_root: PathBuf,
}

impl Luks2 {
    /// Volumes served by the ferry binary `exe`.
    pub fn new(exe: PathBuf) -> Self {
        Self {
            server: ServerCommand::ferry(exe),
            runtime_root: PathBuf::from(ferry_volume::RUNTIME_ROOT),
        }
    }

    /// Volume servers keep `bytes` of the host file system free: writes
    /// into an image's holes fail with ENOSPC below it.
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.server.args.push("--reserve-bytes".into());
        self.server.args.push(bytes.to_string().into());
        self
    }
}

impl Mounted for MountHandle {
    fn target(&self) -> &Path {
        MountHandle::target(self)
    }
    fn unmount(self: Box<Self>) -> Result<(), EngineError> {
        MountHandle::unmount(*self).map_err(err)
    }
    fn server_pid(&self) -> Option<u32> {
        MountHandle::server_pid(self)
    }
    fn leave(self: Box<Self>) {
        MountHandle::detach(*self);
    }
}

/// A mount a previous server made, taken back after a restart: there is no
/// handle any more, so it is unmounted by its target path.
pub struct AdoptedMount {
    /// Where it is mounted.
    pub target: PathBuf,
    /// The engine that unmounts it.
    pub engine: std::sync::Arc<dyn VolumeEngine>,
    /// Its serving process, found from the mount (watched as a new
    /// volume's is).
    pub server_pid: Option<u32>,
}

impl Mounted for AdoptedMount {
    fn target(&self) -> &Path {
        &self.target
    }
    fn unmount(self: Box<Self>) -> Result<(), EngineError> {
        self.engine.unmount(&self.target)
    }
    fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }
    fn leave(self: Box<Self>) {}
}

impl VolumeEngine for Luks2 {
    fn format(
        &self,
        image: &Path,
        size: u64,
        passphrase: &Passphrase,
        token: &KmsToken,
    ) -> Result<(), EngineError> {
        let token = token.to_json();
        ferry_volume::format(
            image,
            &FormatOptions {
                size,
                passphrase,
                token: Some(&token),
            },
        )
        .map_err(err)
    }

    fn format_plain(&self, image: &Path, size: u64) -> Result<(), EngineError> {
        ferry_volume::format_plain(image, size).map_err(err)
    }

    fn mount(
        &self,
        image: &Path,
        target: &Path,
        passphrase: Option<&Passphrase>,
    ) -> Result<Box<dyn Mounted>, EngineError> {
        let h = ferry_volume::mount(&MountOptions {
            image,
            target,
            passphrase,
            server: &self.server,
            runtime_root: &self.runtime_root,
        })
        .map_err(err)?;
        Ok(Box::new(h))
    }

    fn unmount(&self, target: &Path) -> Result<(), EngineError> {
        ferry_volume::unmount(target).map_err(err)
    }

    fn shred(&self, image: &Path) -> Result<(), EngineError> {
        ferry_volume::shred(image).map_err(err)
    }

    fn read_token(&self, image: &Path) -> Result<KmsToken, EngineError> {
        KmsToken::read(image).map_err(err)
    }
}
