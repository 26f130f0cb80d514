//! The LUKS2 header and token 0 as ferry reads them: `luks::header_kind`,
//! then libcryptsetup's header load (`luks::data_offset`,
//! `luks::read_token`), then `KmsToken::from_json`.
//!
//! The input is the first 32 KiB of a volume (both 16 KiB header areas);
//! the file given to libcryptsetup is that, zero-padded to ferry's 1 MiB
//! data offset. LUKS2 headers carry a SHA-256 checksum, which almost every
//! mutation breaks; so that mutations reach the JSON parser, the harness
//! recomputes the checksum of each header copy whose `hdr_size` fits.
//! (libcryptsetup is not instrumented: coverage guidance comes from
//! ferry's side; a crash inside libcryptsetup still shows.)
//!
//! Properties: never panics; a token read back is re-serialized by
//! `to_json` into JSON that `from_json` parses to the same token; a header
//! that loads has its data segment past its own header areas.
#![no_main]

use std::io::Write;
use std::path::Path;

use ferry_volume::luks::{self, HeaderKind};
use ferry_volume::token::KmsToken;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const MAX: usize = 32 << 10;
const CSUM_AT: usize = 448;

/// Recomputes the sha256 checksum of the binary header at `off`, if its
/// `hdr_size` is sane and fits the buffer.
fn fix_checksum(buf: &mut [u8], off: usize) -> Option<usize> {
    let hdr = buf.get(off..off + 512)?;
    if hdr.get(72..78) != Some(b"sha256") {
        return None;
    }
    let size = u64::from_be_bytes(hdr[8..16].try_into().ok()?);
    let size = usize::try_from(size).ok()?;
    if !(4096..=MAX).contains(&size) || off + size > buf.len() {
        return None;
    }
    buf[off + CSUM_AT..off + CSUM_AT + 64].fill(0);
    let sum = Sha256::digest(&buf[off..off + size]);
    buf[off + CSUM_AT..off + CSUM_AT + 32].copy_from_slice(&sum);
    Some(size)
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX {
        return;
    }
    let mut buf = data.to_vec();
    if let Some(size) = fix_checksum(&mut buf, 0) {
        let _ = fix_checksum(&mut buf, size);
    }
    let Ok(mut f) = tempfile::NamedTempFile::new() else {
        panic!("cannot create a temporary file");
    };
    if f.write_all(&buf).is_err() || f.as_file().set_len(luks::DATA_OFFSET + 4096).is_err() {
        panic!("cannot write the temporary file");
    }
    let path: &Path = f.path();
    let Ok(kind) = luks::header_kind(f.as_file()) else {
        return;
    };
    if kind != HeaderKind::Luks(2) {
        return;
    }
    if let Ok(off) = luks::data_offset(path) {
        // The data segment starts past both header copies.
        assert!(off >= 2 * 4096, "data offset {off} inside the header");
    }
    let Ok(Some(token)) = luks::read_token(path) else {
        return;
    };
    if let Ok(t) = KmsToken::from_json(&token) {
        let again = KmsToken::from_json(&t.to_json())
            .unwrap_or_else(|e| panic!("to_json output does not parse: {e}"));
        assert_eq!(again, t, "the token does not round-trip");
    }
});
