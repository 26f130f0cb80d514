//! The sealed blob format (`ferry_blob::stream`): images' manifests,
//! configs and layers at rest.
//!
//! The first input byte picks a mode:
//! - even: the next three bytes are a seek offset, the rest an edit program
//!   (3-byte position, xor mask; a 1-2 byte tail truncates or extends)
//!   applied to a real sealed blob of three chunks;
//! - odd: the rest is read as a sealed blob.
//!
//! Properties: reading never panics; whatever is read, from the start or
//! after a seek, is the original plaintext at that offset (an altered blob
//! may only fail, never yield other bytes); a blob read whole from the
//! start with `expect_digest` succeeds only with the original bytes.
#![no_main]

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::sync::OnceLock;

use ferry_blob::testing::MemoryKeys;
use ferry_blob::{Context, SealedReader, SealedWriter};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

struct Fixture {
    keys: MemoryKeys,
    context: Context,
    plain: Vec<u8>,
    digest: String,
    sealed: Vec<u8>,
}

fn fixture() -> Fixture {
    let keys = MemoryKeys::with_key([3; 32]);
    let context: Context = [("ferry:purpose".to_owned(), "fuzz".to_owned())].into();
    // Two full 64 KiB chunks and a short last one.
    let plain: Vec<u8> = (0..(2 * 65536 + 100))
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let mut w =
        SealedWriter::new(Vec::new(), &keys, &context).unwrap_or_else(|e| panic!("sealing: {e}"));
    std::io::Write::write_all(&mut w, &plain).unwrap_or_else(|e| panic!("sealing: {e}"));
    let (sealed, digest, _) = w.finish().unwrap_or_else(|e| panic!("sealing: {e}"));
    Fixture {
        keys,
        context,
        plain,
        digest,
        sealed,
    }
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// Reads `blob` from `offset` to the end; the bytes it yielded before any
/// error, and whether it ended cleanly.
fn read_from(f: &Fixture, blob: &[u8], offset: u64, digest: bool) -> (Vec<u8>, bool) {
    let Ok(mut r) = SealedReader::new(Cursor::new(blob), &f.keys, &f.context, "fuzz") else {
        return (Vec::new(), false);
    };
    if digest {
        r = r.expect_digest(&f.digest);
    }
    if offset > 0 && r.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), false);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let f = FIXTURE.get_or_init(fixture);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (blob, offset) = if mode % 2 == 0 && rest.len() >= 3 {
        let offset = u24(rest) as u64;
        let mut b = f.sealed.clone();
        let mut edits = rest[3..].chunks_exact(4);
        for e in &mut edits {
            if let Some(x) = b.get_mut(u24(e)) {
                *x ^= e[3];
            }
        }
        match edits.remainder() {
            [n] => b.truncate(b.len().saturating_sub(usize::from(*n))),
            [n, m] => b.extend(std::iter::repeat_n(*m, usize::from(*n))),
            [n, m, o] => b.truncate(u24(&[*n, *m, *o])),
            _ => {}
        }
        (b, offset)
    } else {
        (rest.to_vec(), 0)
    };
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(f.plain.len());
    let (got, clean) = read_from(f, &blob, offset, false);
    assert!(
        f.plain[start..].starts_with(&got),
        "read {} bytes at {offset} that are not the plaintext",
        got.len()
    );
    if clean && blob != f.sealed && offset == 0 {
        // An altered blob may still read whole only if the edit did not
        // touch what is authenticated; then its plaintext is the original.
        assert_eq!(
            got, f.plain,
            "an altered blob read to its end with other content"
        );
    }
    let (whole, ok) = read_from(f, &blob, 0, true);
    if ok {
        assert_eq!(whole, f.plain, "expect_digest passed for other content");
        assert_eq!(format!("sha256:{}", hex(&Sha256::digest(&whole))), f.digest);
    }
});

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
