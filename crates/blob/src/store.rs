//! A directory of sealed blobs named by the digest of their plaintext:
//!
//! ```text
//! ROOT/sha256/<hex>   sealed blobs (crate::stream)
//! ROOT/uploads/       blobs being written (removed on drop or failure)
//! ```
//!
//! A blob takes its name only once it is complete, synced, and its digest
//! checked (a rename), so a crash or a bad upload never leaves a wrong or
//! partial blob under a name. The store does not choose keys: every call
//! takes the [`BlobKeys`] and context to seal or open with, so one store
//! layout serves a registry (a key per repository) and a host's image
//! store (the platform key).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::keys::{BlobKeys, Context};
use crate::stream::{SealedReader, SealedWriter};
use crate::{BlobError, io_err};

/// A parsed `sha256:<64 lowercase hex>` digest: safe to use as a file name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses a digest as clients write it.
    pub fn parse(s: &str) -> Result<Self, BlobError> {
        match s.strip_prefix("sha256:") {
            Some(h)
                if h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Self(s.to_owned()))
            }
            _ => Err(BlobError::BadDigest(s.chars().take(100).collect())),
        }
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blob that took its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its plaintext size in bytes.
    pub size: u64,
}

/// The store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// A blob being written: `Write` the plaintext, then [`BlobUpload::commit`].
/// Dropped without committing, its temporary file is removed.
pub struct BlobUpload {
    writer: SealedWriter<BufWriter<NamedTempFile>>,
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating) a store at `root`. Leftover uploads of a previous
    /// process are removed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let uploads = root.join("uploads");
        if uploads.exists() {
            fs::remove_dir_all(&uploads)
                .map_err(io_err(format!("clearing {}", uploads.display())))?;
        }
        for d in [root.join("sha256"), uploads] {
            fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        Ok(Self { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    /// Whether the store holds `digest`.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Starts writing a blob sealed under a fresh data key from `keys`.
    pub fn create(&self, keys: &dyn BlobKeys, context: &Context) -> Result<BlobUpload, BlobError> {
        let tmp = NamedTempFile::new_in(self.root.join("uploads"))
            .map_err(io_err("creating an upload file"))?;
        Ok(BlobUpload {
            writer: SealedWriter::new(BufWriter::with_capacity(256 * 1024, tmp), keys, context)?,
            root: self.root.clone(),
        })
    }

    /// Copies `from` into a new blob, which must have digest `expected`
    /// (and `size`, when given).
    pub fn put(
        &self,
        keys: &dyn BlobKeys,
        context: &Context,
        mut from: impl Read,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<StoredBlob, BlobError> {
        let mut up = self.create(keys, context)?;
        io::copy(&mut from, &mut up).map_err(io_err("copying into a sealed blob"))?;
        if let Some(want) = size
            && up.size() != want
        {
            return Err(BlobError::DigestMismatch {
                expected: format!("{want} bytes"),
                actual: format!("{} bytes", up.size()),
            });
        }
        up.commit(expected)
    }

    /// Opens `digest` for reading: Decrypt of its data key through `keys`;
    /// a whole front-to-back read also checks the digest.
    pub fn open_blob(
        &self,
        digest: &Digest,
        keys: &dyn BlobKeys,
        context: &Context,
    ) -> Result<SealedReader<File>, BlobError> {
        let path = self.path(digest);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound(digest.to_string()));
            }
            Err(e) => return Err(io_err(format!("opening {}", path.display()))(e)),
        };
        Ok(SealedReader::new(f, keys, context, digest.as_str())?.expect_digest(digest.as_str()))
    }

    /// Reads a whole (small) blob: manifests and configs.
    pub fn read_all(
        &self,
        digest: &Digest,
        keys: &dyn BlobKeys,
        context: &Context,
        limit: u64,
    ) -> Result<Vec<u8>, BlobError> {
        let r = self.open_blob(digest, keys, context)?;
        if r.len() > limit {
            return Err(BlobError::Io {
                context: format!("reading {digest}"),
                err: io::Error::other(format!("larger than {limit} bytes")),
            });
        }
        let mut out = Vec::with_capacity(r.len() as usize);
        r.take(limit)
            .read_to_end(&mut out)
            .map_err(|e| match e.into_inner() {
                Some(inner) => match inner.downcast::<BlobError>() {
                    Ok(b) => *b,
                    Err(other) => BlobError::Io {
                        context: format!("reading {digest}"),
                        err: io::Error::other(other),
                    },
                },
                None => BlobError::Tampered(digest.to_string()),
            })?;
        Ok(out)
    }

    /// Removes `digest`; `false` if it was not there.
    pub fn remove(&self, digest: &Digest) -> Result<bool, BlobError> {
        match fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(format!("removing blob {digest}"))(e)),
        }
    }

    /// Every blob's digest, and its size on disk (sealed).
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, BlobError> {
        let dir = self.root.join("sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))? {
            let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
            let name = e.file_name();
            let Ok(d) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else {
                continue;
            };
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((d, len));
        }
        out.sort();
        Ok(out)
    }
}

impl BlobUpload {
    /// Plaintext bytes written so far.
    pub fn size(&self) -> u64 {
        self.writer.size()
    }

    /// Seals the end, syncs, checks the digest against `expected` (if
    /// any) and names the blob. A blob already stored under that digest is
    /// kept and this copy dropped.
    pub fn commit(self, expected: Option<&Digest>) -> Result<StoredBlob, BlobError> {
        let done = self.finish()?;
        if let Some(want) = expected
            && *want != done.digest
        {
            return Err(BlobError::DigestMismatch {
                expected: want.to_string(),
                actual: done.digest.to_string(),
            });
        }
        done.commit()
    }

    /// Seals the end and syncs, without naming the blob yet: a caller that
    /// must check what it wrote (an image's layers against its config)
    /// reads it back with [`FinishedUpload::open`] and names it, or drops
    /// it, after.
    pub fn finish(self) -> Result<FinishedUpload, BlobError> {
        let (out, digest, size) = self.writer.finish()?;
        let digest = Digest::parse(&digest)?;
        let tmp = out
            .into_inner()
            .map_err(|e| io_err("writing a sealed blob")(e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("syncing a sealed blob"))?;
        Ok(FinishedUpload {
            tmp,
            root: self.root,
            digest,
            size,
        })
    }
}

/// A complete, synced blob not yet under its name (removed on drop).
pub struct FinishedUpload {
    tmp: NamedTempFile,
    root: PathBuf,
    digest: Digest,
    size: u64,
}

impl FinishedUpload {
    /// The digest of its plaintext.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Its plaintext size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads it back (a Decrypt through `keys`); a whole read checks the
    /// digest.
    pub fn open(
        &self,
        keys: &dyn BlobKeys,
        context: &Context,
    ) -> Result<SealedReader<File>, BlobError> {
        let f = self.tmp.reopen().map_err(io_err("reopening an upload"))?;
        Ok(SealedReader::new(f, keys, context, self.digest.as_str())?
            .expect_digest(self.digest.as_str()))
    }

    /// Names the blob. A blob already stored under that digest is kept
    /// and this copy dropped.
    pub fn commit(self) -> Result<StoredBlob, BlobError> {
        let digest = self.digest;
        let dest = self.root.join("sha256").join(digest.hex());
        if !dest.exists() {
            self.tmp
                .persist(&dest)
                .map_err(|e| io_err(format!("storing blob {digest}"))(e.error))?;
        }
        Ok(StoredBlob {
            digest,
            size: self.size,
        })
    }
}

impl Write for BlobUpload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.writer.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::tests::TestKeys;

    #[test]
    fn put_open_and_digest_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let ctx: Context = [("k".to_owned(), "v".to_owned())].into();
        let data = b"layer bytes".repeat(50_000);
        let b = store
            .put(&TestKeys, &ctx, &data[..], None, Some(data.len() as u64))
            .unwrap();
        assert!(store.contains(&b.digest));
        let back = store.read_all(&b.digest, &TestKeys, &ctx, 1 << 30).unwrap();
        assert_eq!(back, data);
        // A wrong expected digest names nothing and leaves no upload file.
        let other = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        assert!(
            store
                .put(&TestKeys, &ctx, &b"x"[..], Some(&other), None)
                .is_err()
        );
        assert!(!store.contains(&other));
        assert_eq!(fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
        assert_eq!(store.list().unwrap().len(), 1);
        // A blob swapped under another's name fails its digest check.
        let c = store
            .put(&TestKeys, &ctx, &b"other"[..], None, None)
            .unwrap();
        fs::copy(store.path(&c.digest), store.path(&b.digest)).unwrap();
        assert!(store.read_all(&b.digest, &TestKeys, &ctx, 1 << 30).is_err());
        assert!(store.remove(&b.digest).unwrap());
        assert!(!store.remove(&b.digest).unwrap());
    }

    #[test]
    fn digests_parse_strictly() {
        assert!(Digest::parse(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in [
            "sha256:../x",
            "md5:abc",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }
}
