//! AWS Signature Version 4: the canonical request, the signer and the
//! verifier (header form: `Authorization: AWS4-HMAC-SHA256 ...`).
//!
//! The canonical request follows the AWS definition exactly, as botocore
//! builds it for non-S3 services: the path is normalized (dot segments and
//! empty segments removed, trailing slash kept) and URI-encoded once more on
//! top of its wire form; query parameters are decoded, re-encoded with the
//! strict RFC 3986 set and sorted; signed header values are trimmed with
//! inner runs of spaces collapsed; the payload hash is the SHA-256 of the
//! body actually received (an `x-amz-content-sha256` header that disagrees
//! with the body is rejected rather than trusted).

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::FormatItem, macros::format_description,
};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm SigV4 header auth uses.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far a request's `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW: time::Duration = time::Duration::minutes(15);

const AMZ_DATE: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// Why a request's signature was not accepted. Each maps to the AWS error
/// code and message the real services send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    Missing,
    /// The `Authorization` header or its companions are malformed.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not known (or inactive, or its session token
    /// is missing or wrong, or its session was revoked).
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The access key belongs to a session that has expired.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// The signature does not match, or the scope/date is wrong.
    #[error("{0}")]
    Invalid(String),
}

impl AuthError {
    /// The AWS error code (`__type`) of the JSON protocols.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::ExpiredToken => "ExpiredTokenException",
            AuthError::Invalid(_) => "InvalidSignatureException",
        }
    }

    /// The error code the query-protocol services (IAM, STS) send instead.
    pub fn query_code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationToken",
            AuthError::Incomplete(_) => "IncompleteSignature",
            AuthError::UnknownKey => "InvalidClientTokenId",
            AuthError::ExpiredToken => "ExpiredToken",
            AuthError::Invalid(_) => "SignatureDoesNotMatch",
        }
    }

    /// The error in the query protocol's words: IAM and STS answer
    /// authentication failures with 403 (an expired token with 400, as the
    /// STS model says).
    pub fn into_query_error(self) -> ferry_proto::AwsError {
        let status = if matches!(self, AuthError::ExpiredToken) {
            400
        } else {
            403
        };
        ferry_proto::AwsError::client(self.query_code(), self.to_string()).with_status(status)
    }

    fn mismatch() -> Self {
        AuthError::Invalid(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
                .into(),
        )
    }
}

impl From<AuthError> for ferry_proto::AwsError {
    fn from(e: AuthError) -> Self {
        let status = if matches!(e, AuthError::Missing) {
            403
        } else {
            400
        };
        ferry_proto::AwsError::client(e.code(), e.to_string()).with_status(status)
    }
}

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path as sent on the wire (still percent-encoded).
    pub path: &'a str,
    /// The raw query string without `?` (may be empty).
    pub query: &'a str,
    /// All request headers.
    pub headers: &'a HeaderMap,
    /// The body bytes.
    pub body: &'a [u8],
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    /// The access key id from the credential.
    pub access_key_id: String,
    /// `YYYYMMDD` from the credential scope.
    pub date: String,
    /// The region from the credential scope.
    pub region: String,
    /// The service (signing name) from the credential scope.
    pub service: String,
    /// Lowercase signed header names, in the order given.
    pub signed_headers: Vec<String>,
    /// The signature, as sent (hex).
    pub signature: String,
}

/// Parses the `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<AuthHeader, AuthError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            AuthError::Incomplete(format!(
                "Authorization header requires the algorithm {ALGORITHM}. Authorization={value}"
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(AuthError::Incomplete(format!(
                "Authorization header requires each component to have the form name=value. Authorization={value}"
            )));
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let mut missing = String::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if v.is_none() {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(AuthError::Incomplete(format!(
            "{missing}Authorization={value}"
        )));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope.iter().any(|s| s.is_empty()) {
        return Err(AuthError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    }
    if scope[4] != "aws4_request" {
        return Err(AuthError::Invalid(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            scope[4]
        )));
    }
    let signed_headers: Vec<String> = signed
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(AuthError::Incomplete(format!(
            "Authorization header has an empty SignedHeaders entry. Authorization={value}"
        )));
    }
    Ok(AuthHeader {
        access_key_id: scope[0].to_owned(),
        date: scope[1].to_owned(),
        region: scope[2].to_owned(),
        service: scope[3].to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

/// The strict SigV4 URI encoding: everything but `A-Za-z0-9-_.~` (and `/`
/// when `keep_slash`) becomes `%XX` with uppercase hex.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                out.push('%');
                out.push(HEX_UPPER[(b >> 4) as usize] as char);
                out.push(HEX_UPPER[(b & 15) as usize] as char);
            }
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The canonical URI: dot segments and empty segments removed (as botocore
/// does), then the wire path URI-encoded once more (non-S3 services encode
/// twice in total).
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut segs: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut norm = String::with_capacity(path.len() + 1);
    norm.push('/');
    norm.push_str(&segs.join("/"));
    if path.ends_with('/') && !segs.is_empty() {
        norm.push('/');
    }
    uri_encode(norm.as_bytes(), true)
}

/// The canonical query string: each name and value decoded, re-encoded
/// strictly, sorted by name then value, joined with `&`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

fn canonical_header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut vals = headers.get_all(name).iter().peekable();
    vals.peek()?;
    let mut out = String::new();
    for (i, v) in vals.enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Header values may carry obs-text; SigV4 signs the bytes as sent.
        let s = String::from_utf8_lossy(v.as_bytes());
        let mut prev_space = false;
        for c in s.trim().chars() {
            if c == ' ' || c == '\t' {
                if !prev_space {
                    out.push(' ');
                }
                prev_space = true;
            } else {
                out.push(c);
                prev_space = false;
            }
        }
    }
    Some(out)
}

/// Builds the canonical request for `req` over the given signed headers
/// (lowercase) and payload hash. Fails if a signed header is absent.
pub fn canonical_request(
    req: &RequestParts<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, AuthError> {
    let mut names: Vec<&str> = signed_headers.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for n in &names {
        let v = canonical_header_value(req.headers, n).ok_or_else(|| {
            AuthError::Incomplete(format!(
                "The signed header '{n}' is not present in the request."
            ))
        })?;
        out.push_str(n);
        out.push(':');
        out.push_str(&v);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&names.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    m.update(data);
    m.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // new_from_slice only fails for fixed-size-key MACs; HMAC has none.
    <HmacSha256 as Mac>::new(&Default::default())
}

/// The SigV4 signing key for a secret, date, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let k_secret = Zeroizing::new(format!("AWS4{secret}"));
    let k_date = Zeroizing::new(hmac(k_secret.as_bytes(), date.as_bytes()));
    let k_region = Zeroizing::new(hmac(k_date.as_slice(), region.as_bytes()));
    let k_service = Zeroizing::new(hmac(k_region.as_slice(), service.as_bytes()));
    Zeroizing::new(hmac(k_service.as_slice(), b"aws4_request"))
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id that signed.
    pub access_key_id: String,
    /// The region of the credential scope.
    pub region: String,
}

/// Looks up the secret for an access key id.
pub trait SecretLookup {
    /// The secret access key, or why the key is refused
    /// ([`AuthError::UnknownKey`], [`AuthError::ExpiredToken`]).
    fn secret(&self, access_key_id: &str) -> Result<Zeroizing<String>, AuthError>;
}

/// Derived signing keys by (access key id, date, region, service), as the
/// AWS SDKs cache them on the client side: deriving one costs four HMACs,
/// and a server sees the same few scopes all day. Each entry keeps the
/// secret it was derived from and is only used while the credential table
/// still returns that secret. Bounded; secrets and keys are wiped on drop.
#[derive(Default)]
pub struct SigningKeyCache {
    /// Keyed by `access-key-id/date/region/service`.
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedKey>>,
}

struct CachedKey {
    secret: Zeroizing<String>,
    key: Zeroizing<[u8; 32]>,
}

/// More scopes than a server sees in a day; past it the cache starts over.
const CACHE_LIMIT: usize = 256;

impl SigningKeyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The signing key for `secret` in the scope of `parsed`.
    fn get(&self, parsed: &AuthHeader, secret: &Zeroizing<String>) -> Zeroizing<[u8; 32]> {
        let scope = format!(
            "{}/{}/{}/{}",
            parsed.access_key_id, parsed.date, parsed.region, parsed.service
        );
        // A poisoned lock only means another request panicked mid-insert:
        // derive without the cache rather than fail.
        let Ok(mut entries) = self.entries.lock() else {
            return signing_key(secret, &parsed.date, &parsed.region, &parsed.service);
        };
        if let Some(c) = entries.get(&scope)
            && c.secret.as_bytes() == secret.as_bytes()
        {
            return c.key.clone();
        }
        let key = signing_key(secret, &parsed.date, &parsed.region, &parsed.service);
        if entries.len() >= CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(
            scope,
            CachedKey {
                secret: secret.clone(),
                key: key.clone(),
            },
        );
        key
    }
}

/// Verifies the SigV4 header signature of `req` for `service` at time `now`.
pub fn verify(
    req: &RequestParts<'_>,
    service: &str,
    now: OffsetDateTime,
    keys: &dyn SecretLookup,
) -> Result<Verified, AuthError> {
    verify_inner(req, service, now, keys, None)
}

/// [`verify`] with derived signing keys taken from (and added to) `cache`.
pub fn verify_cached(
    req: &RequestParts<'_>,
    service: &str,
    now: OffsetDateTime,
    keys: &dyn SecretLookup,
    cache: &SigningKeyCache,
) -> Result<Verified, AuthError> {
    verify_inner(req, service, now, keys, Some(cache))
}

fn verify_inner(
    req: &RequestParts<'_>,
    service: &str,
    now: OffsetDateTime,
    keys: &dyn SecretLookup,
    cache: Option<&SigningKeyCache>,
) -> Result<Verified, AuthError> {
    let Some(auth) = req.headers.get(http::header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let auth = auth.to_str().map_err(|_| {
        AuthError::Incomplete("The Authorization header is not valid ASCII.".into())
    })?;
    let parsed = parse_authorization(auth)?;

    let amz_date = match req.headers.get("x-amz-date") {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => None,
    };
    let Some(amz_date) = amz_date else {
        return Err(AuthError::Incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={auth}"
        )));
    };
    let when = PrimitiveDateTime::parse(&amz_date, AMZ_DATE)
        .map_err(|_| {
            AuthError::Incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ))
        })?
        .assume_utc();

    if !parsed.signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::Invalid(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    if parsed.service != service {
        return Err(AuthError::Invalid(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if !amz_date.starts_with(&parsed.date) || parsed.date.len() != 8 {
        return Err(AuthError::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            parsed.date,
            amz_date.get(..8).unwrap_or(&amz_date)
        )));
    }
    if !valid_region(&parsed.region) {
        return Err(AuthError::Invalid(
            "Credential should be scoped to a valid region. ".into(),
        ));
    }

    // Unknown keys are reported before the clock check, as AWS does.
    let secret = keys.secret(&parsed.access_key_id)?;

    if when < now - MAX_SKEW {
        return Err(AuthError::Invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            fmt_amz(now - MAX_SKEW),
            fmt_amz(now)
        )));
    }
    if when > now + MAX_SKEW {
        return Err(AuthError::Invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            fmt_amz(now + MAX_SKEW),
            fmt_amz(now)
        )));
    }

    let body_hash = hex::encode(Sha256::digest(req.body));
    if let Some(claimed) = req.headers.get("x-amz-content-sha256")
        && claimed.as_bytes() != body_hash.as_bytes()
    {
        return Err(AuthError::Invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
        ));
    }
    let creq = canonical_request(req, &parsed.signed_headers, &body_hash)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        parsed.date, parsed.region, parsed.service
    );
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let key = match cache {
        Some(c) => c.get(&parsed, &secret),
        None => signing_key(&secret, &parsed.date, &parsed.region, &parsed.service),
    };

    let provided = hex::decode(&parsed.signature).map_err(|_| AuthError::mismatch())?;
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key.as_slice()).map_err(|_| AuthError::mismatch())?;
    mac.update(sts.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&provided)
        .map_err(|_| AuthError::mismatch())?;
    Ok(Verified {
        access_key_id: parsed.access_key_id,
        region: parsed.region,
    })
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn fmt_amz(t: OffsetDateTime) -> String {
    t.format(AMZ_DATE).unwrap_or_default()
}

/// Credentials for signing.
#[derive(Clone)]
pub struct SigningCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Zeroizing<String>,
}

/// Signs requests for one service and region (the load generator and tests
/// use it; so could any in-house client).
pub struct Signer<'a> {
    /// The credentials.
    pub creds: &'a SigningCredentials,
    /// The region of the credential scope.
    pub region: &'a str,
    /// The service (signing name) of the credential scope.
    pub service: &'a str,
}

impl Signer<'_> {
    /// Signs a request in place: sets `x-amz-date` and `authorization`;
    /// `host` must already be present. Signs every header but
    /// `user-agent` and `content-length`, as botocore does.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &mut HeaderMap,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        sign_inner(method, path, query, headers, body, self, now)
    }
}

fn sign_inner(
    method: &str,
    path: &str,
    query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    signer: &Signer<'_>,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    let (creds, region, service) = (signer.creds, signer.region, signer.service);
    let amz_date = fmt_amz(now);
    let date = amz_date.get(..8).unwrap_or_default().to_owned();
    let date_value = http::HeaderValue::from_str(&amz_date)
        .map_err(|_| AuthError::Incomplete("bad date".into()))?;
    headers.insert("x-amz-date", date_value);
    let mut signed: Vec<String> = headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k != "authorization" && k != "user-agent" && k != "content-length")
        .collect();
    signed.sort();
    signed.dedup();
    let body_hash = hex::encode(Sha256::digest(body));
    let req = RequestParts {
        method,
        path,
        query,
        headers,
        body,
    };
    let creq = canonical_request(&req, &signed, &body_hash)?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let key = signing_key(&creds.secret_access_key, &date, region, service);
    let sig = hex::encode(hmac(key.as_slice(), sts.as_bytes()));
    let value = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
        creds.access_key_id,
        signed.join(";")
    );
    let value = http::HeaderValue::from_str(&value)
        .map_err(|_| AuthError::Incomplete("bad key id".into()))?;
    headers.insert(http::header::AUTHORIZATION, value);
    Ok(())
}

#[cfg(test)]
mod tests;
