//! The ciphertext blob format and the encryption-context AAD encoding.
//!
//! Blob, version 1 (all integers big-endian):
//!
//! ```text
//! "FKMS" | 0x01 | arn_len:u16 | key ARN (UTF-8) | material_version:u32 | iv[12] | tag[16] | ciphertext
//! ```
//!
//! The AES-256-GCM AAD binds the header (everything before the IV) and the
//! encryption context, so neither the key reference nor the context can be
//! swapped:
//!
//! ```text
//! "ferry-kms-blob-v1" | header_len:u32 | header | pairs:u32 | (klen:u32 | key | vlen:u32 | value)*
//! ```
//!
//! with pairs sorted by key bytes. Length prefixes make the encoding
//! injective: `{"ab":"c"}` and `{"a":"bc"}` give different AADs.

use std::collections::BTreeMap;

use crate::crypto::{IV_LEN, TAG_LEN};

const MAGIC: &[u8; 4] = b"FKMS";
const VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"ferry-kms-blob-v1";
/// The largest ciphertext blob KMS accepts (the `CiphertextType` limit).
pub const MAX_BLOB: usize = 6144;

/// Why a blob did not parse. Callers answer `InvalidCiphertextException`
/// without detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Not a ferry KMS blob, an unknown version, or truncated/garbled.
    #[error("malformed ciphertext blob")]
    Malformed,
}

/// A parsed blob, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob<'a> {
    /// The key ARN the blob was made under.
    pub key_arn: &'a str,
    /// The key material version (1 = original, +1 per rotation).
    pub material_version: u32,
    /// Everything before the IV (bound into the AAD).
    pub header: &'a [u8],
    /// The GCM IV.
    pub iv: &'a [u8],
    /// The GCM tag.
    pub tag: &'a [u8],
    /// The ciphertext.
    pub ciphertext: &'a [u8],
}

/// The header for a key ARN and material version.
pub fn header(key_arn: &str, material_version: u32) -> Vec<u8> {
    let arn = key_arn.as_bytes();
    let arn_len = u16::try_from(arn.len()).unwrap_or(u16::MAX);
    let mut h = Vec::with_capacity(4 + 1 + 2 + arn.len() + 4);
    h.extend_from_slice(MAGIC);
    h.push(VERSION);
    h.extend_from_slice(&arn_len.to_be_bytes());
    h.extend_from_slice(&arn[..usize::from(arn_len).min(arn.len())]);
    h.extend_from_slice(&material_version.to_be_bytes());
    h
}

/// Assembles a blob from its header and the GCM output.
pub fn assemble(
    header: &[u8],
    iv: &[u8; IV_LEN],
    tag: &[u8; TAG_LEN],
    ciphertext: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(header.len() + IV_LEN + TAG_LEN + ciphertext.len());
    b.extend_from_slice(header);
    b.extend_from_slice(iv);
    b.extend_from_slice(tag);
    b.extend_from_slice(ciphertext);
    b
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], BlobError> {
    if b.len() < n {
        return Err(BlobError::Malformed);
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

/// Parses a blob. Never panics, whatever the input.
pub fn parse(input: &[u8]) -> Result<Blob<'_>, BlobError> {
    if input.len() > MAX_BLOB {
        return Err(BlobError::Malformed);
    }
    let mut b = input;
    if take(&mut b, 4)? != MAGIC || take(&mut b, 1)? != [VERSION] {
        return Err(BlobError::Malformed);
    }
    let len_bytes: [u8; 2] = take(&mut b, 2)?
        .try_into()
        .map_err(|_| BlobError::Malformed)?;
    let arn = take(&mut b, usize::from(u16::from_be_bytes(len_bytes)))?;
    let key_arn = std::str::from_utf8(arn).map_err(|_| BlobError::Malformed)?;
    let v: [u8; 4] = take(&mut b, 4)?
        .try_into()
        .map_err(|_| BlobError::Malformed)?;
    let header_len = input.len() - b.len();
    let iv = take(&mut b, IV_LEN)?;
    let tag = take(&mut b, TAG_LEN)?;
    if key_arn.is_empty() {
        return Err(BlobError::Malformed);
    }
    Ok(Blob {
        key_arn,
        material_version: u32::from_be_bytes(v),
        header: &input[..header_len],
        iv,
        tag,
        ciphertext: b,
    })
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Lengths are bounded by the request size limit, far below u32::MAX.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// The AAD for a blob header and an encryption context.
pub fn aad(header: &[u8], context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_LABEL.len() + 8 + header.len() + context.len() * 32);
    out.extend_from_slice(AAD_LABEL);
    put_len(&mut out, header.len());
    out.extend_from_slice(header);
    put_len(&mut out, context.len());
    // BTreeMap<String, _> iterates in byte order of the keys.
    for (k, v) in context {
        put_len(&mut out, k.len());
        out.extend_from_slice(k.as_bytes());
        put_len(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trip() {
        let h = header("arn:aws:kms:us-east-1:123456789012:key/abc", 7);
        let b = assemble(&h, &[1; IV_LEN], &[2; TAG_LEN], b"secret-ct");
        let p = parse(&b).unwrap();
        assert_eq!(p.key_arn, "arn:aws:kms:us-east-1:123456789012:key/abc");
        assert_eq!(p.material_version, 7);
        assert_eq!(p.header, &h[..]);
        assert_eq!(p.iv, &[1; IV_LEN]);
        assert_eq!(p.tag, &[2; TAG_LEN]);
        assert_eq!(p.ciphertext, b"secret-ct");
    }

    #[test]
    fn aad_is_unambiguous() {
        let h = header("k", 1);
        assert_ne!(aad(&h, &ctx(&[("ab", "c")])), aad(&h, &ctx(&[("a", "bc")])));
        assert_ne!(
            aad(&h, &ctx(&[("a", "b"), ("c", "d")])),
            aad(&h, &ctx(&[("a", "b\0\0\0\x01c"), ("", "d")]))
        );
        assert_ne!(aad(&h, &ctx(&[])), aad(&h, &ctx(&[("", "")])));
        assert_ne!(
            aad(&header("k", 1), &ctx(&[])),
            aad(&header("k", 2), &ctx(&[]))
        );
        // Order of insertion does not matter.
        let mut a = BTreeMap::new();
        a.insert("z".to_string(), "1".to_string());
        a.insert("a".to_string(), "2".to_string());
        assert_eq!(aad(&h, &a), aad(&h, &ctx(&[("a", "2"), ("z", "1")])));
    }

    #[test]
    fn truncations_and_garbage_are_rejected() {
        let h = header("arn:x", 1);
        let b = assemble(&h, &[1; IV_LEN], &[2; TAG_LEN], b"");
        for n in 0..b.len() {
            assert_eq!(parse(&b[..n]), Err(BlobError::Malformed), "prefix {n}");
        }
        assert!(parse(&b).is_ok());
        let mut bad = b.clone();
        bad[4] = 2;
        assert!(parse(&bad).is_err());
        assert!(parse(&vec![0u8; MAX_BLOB + 1]).is_err());
        // An ARN length pointing past the end.
        let mut long = b.clone();
        long[5] = 0xff;
        assert!(parse(&long).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..7000)) {
            let _ = parse(&data);
        }

        #[test]
        fn parse_never_panics_on_valid_prefix(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100), len in 0u16..u16::MAX) {
            let mut data = b"FKMS\x01".to_vec();
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(&tail);
            let _ = parse(&data);
        }
    }
}
