//! The sealed file format (docs/images.md, "Sealed blobs").
//!
//! ```text
//! header   "FSB1" | u32 BE chunk size C | u16 BE n | sealed data key (n bytes)
//! chunks   ciphertext | GCM tag (16), one per C bytes of plaintext; the
//!          last holds 0..=C bytes (an empty blob is one empty chunk)
//! ```
//!
//! Chunk `i` is AES-256-GCM under the blob's data key with nonce
//! `0^32 || u64 BE i` and associated data
//! `SHA-256(header || context) || u64 BE i || final flag`. A fresh data key
//! per blob makes the counter nonce unique; the header hash ties every
//! chunk to its sealed key and encryption context; the index and the final
//! flag make reordering, truncation at a chunk boundary and appended chunks
//! fail to authenticate. Chunks of fixed size let a reader seek (registry
//! range requests) and know the plaintext length from the file's length.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::OnceLock;

use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use sha2::{Digest as _, Sha256};

use crate::keys::{BlobKeys, Context, DataKey};
use crate::{BlobError, io_err};

/// The first bytes of a sealed blob (format version 1).
pub const MAGIC: &[u8; 4] = b"FSB1";
/// Plaintext bytes per chunk written by this version.
pub const CHUNK: usize = 64 * 1024;
/// The largest chunk a reader accepts (a corrupt header must not make it
/// allocate without bound).
const MAX_CHUNK: usize = 16 << 20;
const TAG: usize = 16;

fn aes_256_gcm() -> Result<&'static CipherRef, BlobError> {
    static CIPHER: OnceLock<Option<Cipher>> = OnceLock::new();
    CIPHER
        .get_or_init(|| Cipher::fetch(None, "AES-256-GCM", None).ok())
        .as_deref()
        .ok_or(BlobError::Crypto)
}

fn nonce(index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

/// The per-blob part of every chunk's associated data.
fn binding(header: &[u8], context: &Context) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header);
    for (k, v) in context {
        for s in [k, v] {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
    h.finalize().into()
}

fn aad(binding: &[u8; 32], index: u64, last: bool) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..32].copy_from_slice(binding);
    a[32..40].copy_from_slice(&index.to_be_bytes());
    a[40] = u8::from(last);
    a
}

fn header(chunk: u32, wrapped: &[u8]) -> Result<Vec<u8>, BlobError> {
    let n = u16::try_from(wrapped.len()).map_err(|_| BlobError::Crypto)?;
    let mut h = Vec::with_capacity(10 + wrapped.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&chunk.to_be_bytes());
    h.extend_from_slice(&n.to_be_bytes());
    h.extend_from_slice(wrapped);
    Ok(h)
}

/// Encrypts a blob as it is written, hashing the plaintext.
pub struct SealedWriter<W: Write> {
    out: W,
    key: DataKey,
    binding: [u8; 32],
    buf: Vec<u8>,
    index: u64,
    sealed: Vec<u8>,
    hash: Sha256,
    size: u64,
}

impl<W: Write> SealedWriter<W> {
    /// Starts a blob: a fresh data key from `keys` for `context`, and the
    /// header written to `out`.
    pub fn new(mut out: W, keys: &dyn BlobKeys, context: &Context) -> Result<Self, BlobError> {
        let (key, wrapped) = keys.generate(context)?;
        let chunk = u32::try_from(CHUNK).map_err(|_| BlobError::Crypto)?;
        let h = header(chunk, &wrapped)?;
        out.write_all(&h)
            .map_err(io_err("writing a sealed blob's header"))?;
        Ok(Self {
            out,
            key,
            binding: binding(&h, context),
            buf: Vec::with_capacity(CHUNK),
            index: 0,
            sealed: Vec::with_capacity(CHUNK + TAG),
            hash: Sha256::new(),
            size: 0,
        })
    }

    fn flush_chunk(&mut self, last: bool) -> io::Result<()> {
        let crypto = |_| io::Error::other("the cipher library failed");
        let mut ctx = CipherCtx::new().map_err(crypto)?;
        ctx.encrypt_init(
            Some(aes_256_gcm().map_err(|_| io::Error::other("AES-256-GCM unavailable"))?),
            Some(self.key.bytes()),
            Some(&nonce(self.index)),
        )
        .map_err(crypto)?;
        ctx.cipher_update(&aad(&self.binding, self.index, last), None)
            .map_err(crypto)?;
        self.sealed.clear();
        ctx.cipher_update_vec(&self.buf, &mut self.sealed)
            .map_err(crypto)?;
        ctx.cipher_final_vec(&mut self.sealed).map_err(crypto)?;
        let mut tag = [0u8; TAG];
        ctx.tag(&mut tag).map_err(crypto)?;
        self.sealed.extend_from_slice(&tag);
        self.out.write_all(&self.sealed)?;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Bytes of plaintext written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Seals the last chunk and returns the sink, the plaintext's digest
    /// (`sha256:<hex>`) and its size. The sink is not synced.
    pub fn finish(mut self) -> Result<(W, String, u64), BlobError> {
        self.flush_chunk(true)
            .map_err(io_err("writing a sealed blob"))?;
        self.out.flush().map_err(io_err("writing a sealed blob"))?;
        let digest = format!("sha256:{}", hex::encode(self.hash.finalize()));
        Ok((self.out, digest, self.size))
    }
}

impl<W: Write> Write for SealedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full buffer is only sealed once more data shows it is not the
        // last chunk.
        if self.buf.len() == CHUNK && !data.is_empty() {
            self.flush_chunk(false)?;
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hash.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decrypts a sealed blob; seekable. A reader that reads the whole blob
/// from the start, front to back, also checks the plaintext's digest at
/// the end when given one ([`SealedReader::expect_digest`]).
pub struct SealedReader<R: Read + Seek> {
    inner: R,
    key: DataKey,
    binding: [u8; 32],
    chunk: usize,
    header_len: u64,
    chunks: u64,
    len: u64,
    pos: u64,
    /// The decrypted chunk `current`.
    plain: Vec<u8>,
    current: Option<u64>,
    sealed: Vec<u8>,
    verify: Option<(String, Sha256, u64)>,
    label: String,
}

impl<R: Read + Seek> SealedReader<R> {
    /// Opens a sealed blob: reads its header, has `keys` unwrap its data
    /// key for `context`, and works out its length. `label` names it in
    /// errors.
    pub fn new(
        mut inner: R,
        keys: &dyn BlobKeys,
        context: &Context,
        label: &str,
    ) -> Result<Self, BlobError> {
        let tampered = || BlobError::Tampered(label.to_owned());
        let total = inner
            .seek(SeekFrom::End(0))
            .map_err(io_err(format!("reading {label}")))?;
        inner
            .seek(SeekFrom::Start(0))
            .map_err(io_err(format!("reading {label}")))?;
        let mut fixed = [0u8; 10];
        inner.read_exact(&mut fixed).map_err(|_| tampered())?;
        if &fixed[..4] != MAGIC {
            return Err(tampered());
        }
        let chunk = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]) as usize;
        let n = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        if chunk == 0 || chunk > MAX_CHUNK {
            return Err(tampered());
        }
        let mut wrapped = vec![0u8; n];
        inner.read_exact(&mut wrapped).map_err(|_| tampered())?;
        let h = header(chunk as u32, &wrapped)?;
        let header_len = h.len() as u64;
        let body = total.checked_sub(header_len).ok_or_else(tampered)?;
        let stride = (chunk + TAG) as u64;
        let (full, rest) = (body / stride, body % stride);
        let chunks = match rest {
            0 if full > 0 => full,
            r if r >= TAG as u64 => full + 1,
            _ => return Err(tampered()),
        };
        let len = body - chunks * TAG as u64;
        let key = keys.unwrap(&wrapped, context)?;
        Ok(Self {
            inner,
            key,
            binding: binding(&h, context),
            chunk,
            header_len,
            chunks,
            len,
            pos: 0,
            plain: Vec::with_capacity(chunk),
            current: None,
            sealed: vec![0u8; chunk + TAG],
            verify: None,
            label: label.to_owned(),
        })
    }

    /// Checks, when the blob has been read whole from the start, that its
    /// plaintext hashes to `digest` (`sha256:<hex>`); the read that reaches
    /// the end fails otherwise. A seek turns the check off.
    #[must_use]
    pub fn expect_digest(mut self, digest: &str) -> Self {
        self.verify = Some((digest.to_owned(), Sha256::new(), 0));
        self
    }

    /// The plaintext length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn load(&mut self, index: u64) -> io::Result<()> {
        let tampered = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                BlobError::Tampered(self.label.clone()),
            )
        };
        let last = index + 1 == self.chunks;
        let plain_len = if last {
            (self.len - index * self.chunk as u64) as usize
        } else {
            self.chunk
        };
        self.inner.seek(SeekFrom::Start(
            self.header_len + index * (self.chunk + TAG) as u64,
        ))?;
        let buf = &mut self.sealed[..plain_len + TAG];
        self.inner.read_exact(buf)?;
        let (ct, tag) = buf.split_at(plain_len);
        let cipher = aes_256_gcm().map_err(|_| tampered())?;
        let auth = |_| tampered();
        let mut ctx = CipherCtx::new().map_err(auth)?;
        ctx.decrypt_init(Some(cipher), Some(self.key.bytes()), Some(&nonce(index)))
            .map_err(auth)?;
        ctx.cipher_update(&aad(&self.binding, index, last), None)
            .map_err(auth)?;
        self.plain.clear();
        self.current = None;
        ctx.cipher_update_vec(ct, &mut self.plain).map_err(auth)?;
        ctx.set_tag(tag).map_err(auth)?;
        ctx.cipher_final_vec(&mut self.plain).map_err(auth)?;
        self.current = Some(index);
        Ok(())
    }
}

impl<R: Read + Seek> Read for SealedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            // The final chunk holds no plaintext when the blob is empty or
            // ends on a chunk boundary; it must still authenticate (as
            // final), or a blob cut after a full chunk plus 16 forged
            // bytes reads as whole (found by fuzzing: fuzz/corpus/sealed_blob).
            let last = self.chunks - 1;
            if self.pos >= self.len
                && self.len == last * self.chunk as u64
                && self.current != Some(last)
            {
                self.load(last)?;
            }
            if let Some((want, hash, seen)) = self.verify.take()
                && seen == self.len
            {
                let got = format!("sha256:{}", hex::encode(hash.finalize()));
                if got != want {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        BlobError::DigestMismatch {
                            expected: want,
                            actual: got,
                        },
                    ));
                }
            }
            return Ok(0);
        }
        let index = self.pos / self.chunk as u64;
        if self.current != Some(index) {
            self.load(index)?;
        }
        let off = (self.pos - index * self.chunk as u64) as usize;
        let n = out.len().min(self.plain.len() - off);
        out[..n].copy_from_slice(&self.plain[off..off + n]);
        if let Some((_, hash, seen)) = &mut self.verify {
            hash.update(&out[..n]);
            *seen += n as u64;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for SealedReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if target != self.pos {
            self.verify = None;
        }
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::KeyError;
    use std::io::Cursor;

    /// Keys for tests: the "sealed" key is the key itself, prefixed; a
    /// context mismatch is refused as a KMS would.
    pub(crate) struct TestKeys;

    impl BlobKeys for TestKeys {
        fn generate(&self, context: &Context) -> Result<(DataKey, Vec<u8>), KeyError> {
            let mut k = [0u8; 32];
            openssl::rand::rand_bytes(&mut k).map_err(|_| refused())?;
            let mut wrapped = k.to_vec();
            wrapped.extend_from_slice(format!("{context:?}").as_bytes());
            Ok((DataKey::from_slice(&k).ok_or_else(refused)?, wrapped))
        }
        fn unwrap(&self, wrapped: &[u8], context: &Context) -> Result<DataKey, KeyError> {
            if wrapped.len() < 32 || wrapped[32..] != *format!("{context:?}").as_bytes() {
                return Err(refused());
            }
            DataKey::from_slice(&wrapped[..32]).ok_or_else(refused)
        }
    }

    fn refused() -> KeyError {
        KeyError {
            operation: "Decrypt",
            error: ferry_proto::AwsError::client("InvalidCiphertextException", "no"),
        }
    }

    fn ctx(v: &str) -> Context {
        [("blob".to_owned(), v.to_owned())].into()
    }

    fn seal(data: &[u8]) -> (Vec<u8>, String) {
        let mut w = SealedWriter::new(Vec::new(), &TestKeys, &ctx("a")).unwrap();
        // Uneven writes cross chunk boundaries.
        for part in data.chunks(7777) {
            w.write_all(part).unwrap();
        }
        let (out, digest, size) = w.finish().unwrap();
        assert_eq!(size, data.len() as u64);
        (out, digest)
    }

    fn open(sealed: Vec<u8>) -> Result<SealedReader<Cursor<Vec<u8>>>, BlobError> {
        SealedReader::new(Cursor::new(sealed), &TestKeys, &ctx("a"), "test")
    }

    #[test]
    fn round_trips_every_length_class() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (sealed, digest) = seal(&data);
            assert_eq!(
                digest,
                format!("sha256:{}", hex::encode(Sha256::digest(&data)))
            );
            let mut r = open(sealed).unwrap().expect_digest(&digest);
            assert_eq!(r.len(), len as u64);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "length {len}");
        }
    }

    #[test]
    fn ciphertext_does_not_contain_the_plaintext() {
        let data = b"MARKER-0123456789".repeat(10_000);
        let (sealed, _) = seal(&data);
        assert!(!sealed.windows(17).any(|w| w == b"MARKER-0123456789"));
    }

    #[test]
    fn seeks_read_the_right_bytes() {
        let data: Vec<u8> = (0..(2 * CHUNK + 100)).map(|i| (i % 253) as u8).collect();
        let (sealed, _) = seal(&data);
        let mut r = open(sealed).unwrap();
        for at in [CHUNK as u64 + 3, 5, 2 * CHUNK as u64 + 99] {
            r.seek(SeekFrom::Start(at)).unwrap();
            let mut b = [0u8; 1];
            r.read_exact(&mut b).unwrap();
            assert_eq!(b[0], data[at as usize]);
        }
    }

    #[test]
    fn tampering_truncation_and_wrong_context_fail() {
        let data = vec![9u8; 2 * CHUNK + 10];
        let (sealed, digest) = seal(&data);
        // A flipped ciphertext bit.
        let mut t = sealed.clone();
        let at = t.len() - 40;
        t[at] ^= 1;
        let mut out = Vec::new();
        assert!(open(t).unwrap().read_to_end(&mut out).is_err());
        // Dropping the last chunk: the new last chunk was not sealed final.
        let header_len = sealed.len() - (2 * (CHUNK + TAG) + 10 + TAG);
        let cut = sealed[..header_len + 2 * (CHUNK + TAG)].to_vec();
        assert!(open(cut).unwrap().read_to_end(&mut Vec::new()).is_err());
        // Another context cannot unwrap the key.
        assert!(SealedReader::new(Cursor::new(sealed.clone()), &TestKeys, &ctx("b"), "t").is_err());
        // Swapped chunks fail.
        let mut s = sealed.clone();
        let (a, b) = (header_len, header_len + CHUNK + TAG);
        let first: Vec<u8> = s[a..b].to_vec();
        let second: Vec<u8> = s[b..b + CHUNK + TAG].to_vec();
        s[a..b].copy_from_slice(&second);
        s[b..b + CHUNK + TAG].copy_from_slice(&first);
        assert!(open(s).unwrap().read_to_end(&mut Vec::new()).is_err());
        // A wrong expected digest fails at the end.
        let mut r = open(sealed)
            .unwrap()
            .expect_digest(&format!("sha256:{}", "0".repeat(64)));
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        let _ = digest;
    }

    /// Fuzzing found it: cut after the full chunks, with 16 bytes standing
    /// for an empty final chunk, a blob read cleanly to a shorter end,
    /// because an empty final chunk was never authenticated.
    #[test]
    fn a_forged_empty_final_chunk_is_refused() {
        for len in [2 * CHUNK + 100, 2 * CHUNK] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (sealed, _) = seal(&data);
            let header = sealed.len() - (len / CHUNK) * (CHUNK + TAG) - (len % CHUNK) - TAG;
            let mut cut = sealed[..header + 2 * (CHUNK + TAG)].to_vec();
            cut.extend_from_slice(&[0x70; TAG]);
            let mut r = open(cut).unwrap();
            let mut out = Vec::new();
            assert!(
                r.read_to_end(&mut out).is_err(),
                "{len}: read {} bytes",
                out.len()
            );
            // The genuine blob still reads whole.
            let mut out = Vec::new();
            open(sealed).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for g in [
            vec![],
            b"FSB1".to_vec(),
            b"FSB1\xff\xff\xff\xff\0\0".to_vec(),
            vec![0u8; 100],
        ] {
            assert!(open(g).is_err());
        }
    }
}
