//! Token 0's JSON (`KmsToken::from_json`), as read from a volume header.
//!
//! Properties: never panics; a parsed token round-trips through `to_json`
//! (same token, and `to_json` is a fixed point); the parse only depends on
//! the three members it reads (extra members, `type` and `keyslots`, do
//! not change the result).
#![no_main]

use ferry_volume::token::KmsToken;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(t) = KmsToken::from_json(&v) else {
        return;
    };
    let j = t.to_json();
    let again =
        KmsToken::from_json(&j).unwrap_or_else(|e| panic!("to_json output does not parse: {e}"));
    assert_eq!(again, t);
    assert_eq!(again.to_json(), j);
    if let Value::Object(mut m) = v {
        m.insert("type".into(), "ferry-kms".into());
        m.insert("keyslots".into(), serde_json::json!(["0"]));
        m.insert("fuzz-extra".into(), Value::Null);
        let more = KmsToken::from_json(&Value::Object(m))
            .unwrap_or_else(|e| panic!("extra members changed the parse: {e}"));
        assert_eq!(more, t);
    }
});
