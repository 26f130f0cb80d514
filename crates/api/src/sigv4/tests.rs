use super::*;
use http::HeaderValue;

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

struct OneKey;
impl SecretLookup for OneKey {
    fn secret(&self, id: &str) -> Result<Zeroizing<String>, AuthError> {
        (id == KEY_ID)
            .then(|| Zeroizing::new(SECRET.to_owned()))
            .ok_or(AuthError::UnknownKey)
    }
}

fn at(s: &str) -> OffsetDateTime {
    PrimitiveDateTime::parse(s, AMZ_DATE).unwrap().assume_utc()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Computes the signature for a request the way the verifier does.
fn signature_for(
    method: &str,
    path: &str,
    query: &str,
    h: &HeaderMap,
    body: &[u8],
    signed: &[&str],
) -> String {
    let req = RequestParts {
        method,
        path,
        query,
        headers: h,
        body,
    };
    let signed: Vec<String> = signed.iter().map(|s| s.to_string()).collect();
    let creq = canonical_request(&req, &signed, &hex::encode(Sha256::digest(body))).unwrap();
    let sts = string_to_sign(
        "20150830T123600Z",
        "20150830/us-east-1/service/aws4_request",
        &creq,
    );
    let key = signing_key(SECRET, "20150830", "us-east-1", "service");
    hex::encode(hmac(key.as_slice(), sts.as_bytes()))
}

// Published AWS SigV4 test-suite vectors (get-vanilla, post-vanilla,
// get-vanilla-query-order-key-case); botocore computes the same values.
#[test]
fn aws_test_suite_vanilla_vectors() {
    let h = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
    ]);
    let hs = ["host", "x-amz-date"];
    assert_eq!(
        signature_for("GET", "/", "", &h, b"", &hs),
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
    assert_eq!(
        signature_for("POST", "/", "", &h, b"", &hs),
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
    );
    assert_eq!(
        signature_for("GET", "/", "Param2=value2&Param1=value1", &h, b"", &hs),
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
    );
}

// Vectors produced with botocore's SigV4Auth (tests/… in the report says how).
#[test]
fn botocore_vectors_paths_queries_and_header_trimming() {
    let h = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
    ]);
    let hs = ["host", "x-amz-date"];
    let req = RequestParts {
        method: "GET",
        path: "/example/../foo%20bar/./x//y/",
        query: "",
        headers: &h,
        body: b"",
    };
    let creq = canonical_request(
        &req,
        &["host".into(), "x-amz-date".into()],
        &hex::encode(Sha256::digest(b"")),
    )
    .unwrap();
    assert!(creq.starts_with("GET\n/foo%2520bar/x/y/\n\n"), "{creq}");
    assert_eq!(
        signature_for("GET", "/example/../foo%20bar/./x//y/", "", &h, b"", &hs),
        "2687ceea5a2295091076755e0eb250117b4c729c33d559bddfa3d2078143f429"
    );
    let h2 = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-target", "TrentService.ListKeys"),
        ("content-type", "application/x-amz-json-1.1"),
        ("my-header1", "  a   b   c "),
        ("x-amz-date", "20150830T123600Z"),
    ]);
    assert_eq!(
        signature_for(
            "POST",
            "/",
            "",
            &h2,
            br#"{"Limit": 5}"#,
            &[
                "content-type",
                "host",
                "my-header1",
                "x-amz-date",
                "x-amz-target"
            ]
        ),
        "1c8436bd1a1d46047879ded032dd7855e4d22653bf1aedb5f48ea5b183ae75fe"
    );
}

#[test]
fn canonical_query_sorts_and_reencodes() {
    assert_eq!(canonical_query("a=x%20y&b=%7E~&a=b"), "a=b&a=x%20y&b=~~");
    assert_eq!(canonical_query("k"), "k=");
    assert_eq!(canonical_query("x=a+b"), "x=a%2Bb");
    assert_eq!(canonical_query(""), "");
}

fn signed_request(body: &[u8], secret: &str, service: &str) -> HeaderMap {
    let mut h = headers(&[
        ("host", "127.0.0.1:1234"),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "TrentService.ListKeys"),
    ]);
    let creds = SigningCredentials {
        access_key_id: KEY_ID.into(),
        secret_access_key: Zeroizing::new(secret.into()),
    };
    Signer {
        creds: &creds,
        region: "eu-west-3",
        service,
    }
    .sign("POST", "/", "", &mut h, body, at("20150830T123600Z"))
    .unwrap();
    h
}

fn check(h: &HeaderMap, body: &[u8], now: &str) -> Result<Verified, AuthError> {
    let req = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: h,
        body,
    };
    verify(&req, "kms", at(now), &OneKey)
}

#[test]
fn round_trip_and_each_failure() {
    let body = br#"{"KeyId":"alias/x"}"#;
    let h = signed_request(body, SECRET, "kms");
    let v = check(&h, body, "20150830T123600Z").unwrap();
    assert_eq!(v.region, "eu-west-3");
    assert_eq!(v.access_key_id, KEY_ID);

    // Tampered body.
    let e = check(&h, br#"{"KeyId":"alias/y"}"#, "20150830T123600Z").unwrap_err();
    assert_eq!(e.code(), "InvalidSignatureException");
    assert!(
        e.to_string()
            .starts_with("The request signature we calculated does not match")
    );

    // Wrong secret.
    let h2 = signed_request(body, "not-the-secret", "kms");
    assert_eq!(
        check(&h2, body, "20150830T123600Z").unwrap_err(),
        AuthError::mismatch()
    );

    // Wrong service in scope.
    let h3 = signed_request(body, SECRET, "ecs");
    let e = check(&h3, body, "20150830T123600Z").unwrap_err();
    assert!(e.to_string().contains("correct service: 'kms'"), "{e}");

    // Clock skew both ways; 14 minutes is fine.
    assert!(check(&h, body, "20150830T125000Z").is_ok());
    let e = check(&h, body, "20150830T125200Z").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Signature expired: 20150830T123600Z is now earlier than"),
        "{e}"
    );
    let e = check(&h, body, "20150830T121900Z").unwrap_err();
    assert_eq!(e.code(), "InvalidSignatureException");

    // Unknown key.
    let mut h4 = h.clone();
    let a = h4
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .replace(KEY_ID, "AKIDUNKNOWN");
    h4.insert("authorization", HeaderValue::from_str(&a).unwrap());
    assert_eq!(
        check(&h4, body, "20150830T123600Z").unwrap_err(),
        AuthError::UnknownKey
    );

    // Missing header, missing date, malformed header.
    let mut h5 = h.clone();
    h5.remove("authorization");
    assert_eq!(
        check(&h5, body, "20150830T123600Z").unwrap_err(),
        AuthError::Missing
    );
    let mut h6 = h.clone();
    h6.remove("x-amz-date");
    assert_eq!(
        check(&h6, body, "20150830T123600Z").unwrap_err().code(),
        "IncompleteSignatureException"
    );
    let mut h7 = h.clone();
    h7.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request",
        ),
    );
    let e = check(&h7, body, "20150830T123600Z").unwrap_err();
    assert_eq!(e.code(), "IncompleteSignatureException");
    assert!(
        e.to_string().contains("requires 'Signature' parameter"),
        "{e}"
    );

    // A content hash header that disagrees with the body.
    let mut h8 = h.clone();
    h8.insert("x-amz-content-sha256", HeaderValue::from_static("00"));
    assert_eq!(
        check(&h8, body, "20150830T123600Z").unwrap_err().code(),
        "InvalidSignatureException"
    );

    // A non-hex signature is a mismatch, not a crash.
    let mut h9 = h.clone();
    let a = h9.get("authorization").unwrap().to_str().unwrap();
    let a = format!("{}zz", &a[..a.len() - 2]);
    h9.insert("authorization", HeaderValue::from_str(&a).unwrap());
    assert_eq!(
        check(&h9, body, "20150830T123600Z").unwrap_err(),
        AuthError::mismatch()
    );
}

proptest::proptest! {
    #[test]
    fn garbage_authorization_never_panics(s in "\\PC{0,300}", date in "\\PC{0,30}") {
        let mut h = headers(&[("host", "h")]);
        if let Ok(v) = HeaderValue::from_str(&s) { h.insert("authorization", v); }
        if let Ok(v) = HeaderValue::from_str(&date) { h.insert("x-amz-date", v); }
        let req = RequestParts { method: "POST", path: "/", query: "", headers: &h, body: b"" };
        let _ = verify(&req, "kms", at("20150830T123600Z"), &OneKey);
        let _ = parse_authorization(&s);
    }

    #[test]
    fn garbage_paths_and_queries_never_panic(p in "\\PC{0,200}", q in "\\PC{0,200}") {
        let _ = canonical_uri(&p);
        let _ = canonical_query(&q);
    }
}

/// A credential table whose secret can change (a rotated key).
struct Rotating(std::sync::Mutex<String>);
impl SecretLookup for Rotating {
    fn secret(&self, id: &str) -> Result<Zeroizing<String>, AuthError> {
        (id == KEY_ID)
            .then(|| Zeroizing::new(self.0.lock().unwrap().clone()))
            .ok_or(AuthError::UnknownKey)
    }
}

#[test]
fn cached_signing_keys_verify_like_uncached_and_follow_secret_changes() {
    let body = br#"{"KeyId":"alias/x"}"#;
    let cache = SigningKeyCache::new();
    let table = Rotating(std::sync::Mutex::new(SECRET.to_owned()));
    let run = |h: &HeaderMap| {
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: h,
            body,
        };
        verify_cached(&req, "kms", at("20150830T123600Z"), &table, &cache)
    };
    let good = signed_request(body, SECRET, "kms");
    let bad = signed_request(body, "not-the-secret", "kms");
    // First call derives and caches, the second uses the cached key.
    assert!(run(&good).is_ok());
    assert!(run(&good).is_ok());
    assert_eq!(run(&bad).unwrap_err(), AuthError::mismatch());
    // The table now holds another secret: the cached key must not be used.
    *table.0.lock().unwrap() = "not-the-secret".into();
    assert_eq!(run(&good).unwrap_err(), AuthError::mismatch());
    assert!(run(&bad).is_ok());
}
