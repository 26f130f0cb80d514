//! Identifiers and secrets in AWS's shapes: access key ids (`AKIA`/`ASIA`
//! and 16 base32 characters), unique ids (`AROA`/`AIDA` and 17), 40-
//! character secret access keys, session tokens; and the token digest.

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The alphabet of AWS key ids and unique ids (RFC 4648 base32).
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn id(prefix: &str, len: usize) -> String {
    // ThreadRng is a CSPRNG seeded from the OS.
    let mut r = rand::rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(char::from(BASE32[r.random_range(0..BASE32.len())]));
    }
    s
}

/// A long-term access key id (`AKIA...`, 20 characters).
pub fn access_key_id() -> String {
    id("AKIA", 16)
}

/// A temporary (session) access key id (`ASIA...`, 20 characters).
pub fn session_key_id() -> String {
    id("ASIA", 16)
}

/// A role's unique id (`AROA...`, 21 characters).
pub fn role_id() -> String {
    id("AROA", 17)
}

/// A user's unique id (`AIDA...`, 21 characters).
pub fn user_id() -> String {
    id("AIDA", 17)
}

/// A 40-character secret access key.
pub fn secret_access_key() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut r = rand::rng();
    let mut s = Zeroizing::new(String::with_capacity(40));
    for _ in 0..40 {
        s.push(char::from(ALPHABET[r.random_range(0..ALPHABET.len())]));
    }
    s
}

/// A session token: 96 random bytes, base64 (SDKs treat it as opaque).
pub fn session_token() -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 96]);
    rand::rng().fill(&mut raw[..]);
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&raw[..]))
}

/// The digest a session token is kept as: only the holder of the token can
/// present it, and the store never sees it.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests in constant time.
pub fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_as_aws() {
        let k = access_key_id();
        assert!(k.starts_with("AKIA") && k.len() == 20);
        assert!(session_key_id().starts_with("ASIA"));
        assert_eq!(role_id().len(), 21);
        assert!(user_id().starts_with("AIDA"));
        assert_eq!(secret_access_key().len(), 40);
        let t = session_token();
        assert_eq!(t.len(), 128);
        let d = token_digest(&t);
        assert!(digest_eq(&d, &token_digest(&t)));
        assert!(!digest_eq(&d, &token_digest("x")));
    }
}
