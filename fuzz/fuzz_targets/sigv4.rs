//! SigV4: a raw HTTP request (as botocore sends it) is parsed into the parts
//! SigV4 covers and verified as the listener verifies it.
//!
//! Properties, beyond "never panics":
//! - a request that verifies under the key's secret fails under any other
//!   secret (no path accepts a signature the key did not produce), and fails
//!   once its body or method is changed;
//! - an accepted signature is the HMAC the public pieces
//!   (`canonical_request`, `string_to_sign`, `signing_key`) give;
//! - the cached verifier agrees with the uncached one;
//! - what `Signer` signs (with `host` present), `verify` accepts.
#![no_main]

use ferry_api::sigv4::{
    self, AuthError, RequestParts, SecretLookup, Signer, SigningCredentials, SigningKeyCache,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

const KEY_ID: &str = "AKIAFUZZ0000EXAMPLE";
const SECRET: &str = "fuzzSecretKey/EXAMPLE+0123456789abcdefghij";
/// 2026-01-01T00:00:00Z: the seeds are signed at this instant.
const NOW: i64 = 1_767_225_600;

struct Keys(&'static str);

impl SecretLookup for Keys {
    fn secret(&self, id: &str) -> Result<Zeroizing<String>, AuthError> {
        if id == KEY_ID {
            Ok(Zeroizing::new(self.0.to_owned()))
        } else {
            Err(AuthError::UnknownKey)
        }
    }
}

struct Req {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// Parses a raw request; headers that `http` refuses are dropped (hyper
/// would have refused the request).
fn parse(data: &[u8]) -> Option<Req> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Request::new(&mut hs);
    let body_at = match r.parse(data).ok()? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let target = r.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for h in r.headers.iter() {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            continue;
        };
        headers.append(n, v);
    }
    Some(Req {
        method: r.method?.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: data[body_at..].to_vec(),
    })
}

fn service_of(h: &HeaderMap) -> String {
    // The signing name from the credential scope, so seeds for any service
    // reach the signature check.
    h.get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| sigv4::parse_authorization(v).ok())
        .map(|a| a.service)
        .unwrap_or_else(|| "kms".to_owned())
}

fn check(req: &Req, now: OffsetDateTime) {
    let service = service_of(&req.headers);
    let cache = SigningKeyCache::new();
    let plain = sigv4::verify(&req.parts(), &service, now, &Keys(SECRET));
    let cached = sigv4::verify_cached(&req.parts(), &service, now, &Keys(SECRET), &cache);
    match (&plain, &cached) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
        _ => panic!("cached and uncached verification disagree: {plain:?} vs {cached:?}"),
    }
    let Ok(v) = plain else { return };
    assert_eq!(v.access_key_id, KEY_ID);

    // Another secret: refused.
    assert!(
        sigv4::verify(&req.parts(), &service, now, &Keys("another-secret")).is_err(),
        "a request verified under two different secrets"
    );
    // The signature is the HMAC the public pieces give.
    let auth = req.headers[http::header::AUTHORIZATION].to_str().ok();
    let parsed = auth.and_then(|a| sigv4::parse_authorization(a).ok());
    let parsed = parsed.unwrap_or_else(|| panic!("accepted without a parsable Authorization"));
    let body_hash = hex_sha256(&req.body);
    let creq = sigv4::canonical_request(&req.parts(), &parsed.signed_headers, &body_hash)
        .unwrap_or_else(|e| panic!("accepted but not canonicalizable: {e}"));
    let amz_date = req.headers["x-amz-date"].to_str().unwrap_or_default();
    let scope = format!(
        "{}/{}/{}/aws4_request",
        parsed.date, parsed.region, parsed.service
    );
    let sts = sigv4::string_to_sign(amz_date, &scope, &creq);
    let key = sigv4::signing_key(SECRET, &parsed.date, &parsed.region, &parsed.service);
    let expect = hmac_hex(key.as_slice(), sts.as_bytes());
    assert!(
        parsed.signature.eq_ignore_ascii_case(&expect),
        "accepted signature {} is not the HMAC {expect}",
        parsed.signature
    );
    // A changed body or method: refused.
    let mut changed = Req {
        body: req.body.clone(),
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
    };
    changed.body.push(b'x');
    assert!(sigv4::verify(&changed.parts(), &service, now, &Keys(SECRET)).is_err());
    changed.body.pop();
    changed.method.push('X');
    assert!(sigv4::verify(&changed.parts(), &service, now, &Keys(SECRET)).is_err());
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// HMAC-SHA256 written out (RFC 2104), independent of the crate's.
fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize();
    outer.iter().map(|x| format!("{x:02x}")).collect()
}

/// Signs the parsed request with `Signer` and checks that it verifies.
fn sign_then_verify(req: &Req, now: OffsetDateTime) {
    if !req.headers.contains_key(http::header::HOST) {
        return;
    }
    let creds = SigningCredentials {
        access_key_id: KEY_ID.to_owned(),
        secret_access_key: Zeroizing::new(SECRET.to_owned()),
    };
    let signer = Signer {
        creds: &creds,
        region: "us-east-1",
        service: "kms",
    };
    let mut headers = req.headers.clone();
    // A client-supplied payload hash is checked against the body; botocore
    // only sends the right one.
    headers.remove("x-amz-content-sha256");
    if signer
        .sign(
            &req.method,
            &req.path,
            &req.query,
            &mut headers,
            &req.body,
            now,
        )
        .is_err()
    {
        return;
    }
    let signed = Req {
        headers,
        body: req.body.clone(),
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
    };
    if let Err(e) = sigv4::verify(&signed.parts(), "kms", now, &Keys(SECRET)) {
        panic!(
            "Signer's own signature refused: {e} ({:?} {:?} {:?} {:?})",
            signed.method, signed.path, signed.query, signed.headers
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(now) = OffsetDateTime::from_unix_timestamp(NOW) else {
        return;
    };
    // Anything goes through the Authorization parser alone.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = sigv4::parse_authorization(s);
        let _ = sigv4::canonical_uri(s);
        let _ = sigv4::canonical_query(s);
    }
    let Some(req) = parse(data) else { return };
    if std::env::var_os("FUZZ_SIGV4_REPORT").is_some() {
        // Seed sanity by hand: do the kept signed requests verify?
        let service = service_of(&req.headers);
        eprintln!(
            "verify: {:?}",
            sigv4::verify(&req.parts(), &service, now, &Keys(SECRET))
        );
    }
    check(&req, now);
    sign_then_verify(&req, now);
});
