//! Request parameters: typed access to a JSON 1.1 request object with the
//! botocore model's constraints and AWS's validation messages.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_proto::AwsError;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::KmsError;

/// The largest encryption context ferry accepts: keys and values together,
/// in UTF-8 bytes (see docs/kms.md).
pub const MAX_CONTEXT_BYTES: usize = 8192;

/// A request object.
pub struct Params<'a> {
    obj: &'a Map<String, Value>,
}

pub(crate) fn field(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn wrong_type(name: &str, want: &str) -> AwsError {
    KmsError::serialization(format!(
        "Start of structure or map found where not expected: {name} must be {want}"
    ))
}

fn shown(v: &str) -> String {
    // Validation messages echo the value; keep them short.
    if v.len() > 64 {
        let mut end = 64;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &v[..end])
    } else {
        v.to_owned()
    }
}

impl<'a> Params<'a> {
    /// Wraps a parsed body; anything but an object is a serialization error.
    pub fn new(v: &'a Value) -> Result<Self, AwsError> {
        v.as_object()
            .map(|obj| Self { obj })
            .ok_or_else(|| KmsError::serialization("The request body must be a JSON object."))
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    /// An optional string of `min..=max` characters.
    pub fn opt_str(&self, name: &str, min: usize, max: usize) -> Result<Option<&'a str>, AwsError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let s = v.as_str().ok_or_else(|| wrong_type(name, "a string"))?;
        let n = s.chars().count();
        if n < min {
            return Err(KmsError::validation(
                &field(name),
                &shown(s),
                &format!("Member must have length greater than or equal to {min}"),
            ));
        }
        if n > max {
            return Err(KmsError::validation(
                &field(name),
                &shown(s),
                &format!("Member must have length less than or equal to {max}"),
            ));
        }
        Ok(Some(s))
    }

    /// A required string.
    pub fn str(&self, name: &str, min: usize, max: usize) -> Result<&'a str, AwsError> {
        self.opt_str(name, min, max)?.ok_or_else(|| missing(name))
    }

    /// `KeyId`-shaped parameter (1..=2048).
    pub fn key_id(&self, name: &str) -> Result<&'a str, AwsError> {
        self.str(name, 1, 2048)
    }

    /// An optional integer within `min..=max`.
    pub fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, AwsError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let n = v.as_i64().ok_or_else(|| wrong_type(name, "an integer"))?;
        if n < min {
            return Err(KmsError::validation(
                &field(name),
                &n.to_string(),
                &format!("Member must have value greater than or equal to {min}"),
            ));
        }
        if n > max {
            return Err(KmsError::validation(
                &field(name),
                &n.to_string(),
                &format!("Member must have value less than or equal to {max}"),
            ));
        }
        Ok(Some(n))
    }

    /// An optional timestamp (JSON 1.1 sends epoch seconds as a number).
    pub fn opt_timestamp(&self, name: &str) -> Result<Option<f64>, AwsError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        v.as_f64()
            .filter(|t| t.is_finite())
            .map(Some)
            .ok_or_else(|| wrong_type(name, "a timestamp (epoch seconds)"))
    }

    /// A required enum value.
    pub fn enum_value(&self, name: &str, allowed: &[&str]) -> Result<&'a str, AwsError> {
        self.opt_enum(name, allowed)?.ok_or_else(|| missing(name))
    }

    /// An optional boolean.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, AwsError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        v.as_bool()
            .map(Some)
            .ok_or_else(|| wrong_type(name, "a boolean"))
    }

    /// `DryRun`.
    pub fn dry_run(&self) -> Result<bool, AwsError> {
        Ok(self.opt_bool("DryRun")?.unwrap_or(false))
    }

    /// An optional base64 blob of `min..=max` bytes (decoded).
    pub fn opt_blob(
        &self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, AwsError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let s = v
            .as_str()
            .ok_or_else(|| wrong_type(name, "a base64 string"))?;
        // Reject before decoding anything absurd.
        if s.len() > max.div_ceil(3) * 4 + 4 {
            return Err(KmsError::validation(
                &field(name),
                "java.nio.HeapByteBuffer",
                &format!("Member must have length less than or equal to {max}"),
            ));
        }
        let bytes = Zeroizing::new(STANDARD.decode(s).map_err(|_| {
            KmsError::serialization(format!("Could not decode {name}: not valid base64"))
        })?);
        if bytes.len() < min {
            return Err(KmsError::validation(
                &field(name),
                "java.nio.HeapByteBuffer",
                &format!("Member must have length greater than or equal to {min}"),
            ));
        }
        if bytes.len() > max {
            return Err(KmsError::validation(
                &field(name),
                "java.nio.HeapByteBuffer",
                &format!("Member must have length less than or equal to {max}"),
            ));
        }
        Ok(Some(bytes))
    }

    /// A required blob.
    pub fn blob(&self, name: &str, min: usize, max: usize) -> Result<Zeroizing<Vec<u8>>, AwsError> {
        self.opt_blob(name, min, max)?.ok_or_else(|| missing(name))
    }

    /// An optional string map (encryption contexts).
    pub fn opt_map(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let m = v
            .as_object()
            .ok_or_else(|| wrong_type(name, "a map of strings"))?;
        let mut out = BTreeMap::new();
        for (k, v) in m {
            let v = v
                .as_str()
                .ok_or_else(|| wrong_type(name, "a map of strings"))?;
            out.insert(k.clone(), v.to_owned());
        }
        Ok(Some(out))
    }

    /// An optional encryption context: a string map whose keys and values
    /// together take at most [`MAX_CONTEXT_BYTES`] bytes (UTF-8). Checked
    /// before anything else sees it: the context is bound into the AAD and
    /// recorded in the audit trail.
    pub fn opt_context(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
        let Some(m) = self.opt_map(name)? else {
            return Ok(None);
        };
        let size: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_CONTEXT_BYTES {
            return Err(KmsError::invalid(format!(
                "1 validation error detected: Value at '{}' failed to satisfy constraint: \
                 Member must have a total size (keys and values, UTF-8 bytes) less than or equal to {MAX_CONTEXT_BYTES}",
                field(name)
            )));
        }
        Ok(Some(m))
    }

    /// An optional list of strings with `min..=max` entries.
    pub fn opt_list(
        &self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<Vec<String>>, AwsError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let a = v.as_array().ok_or_else(|| wrong_type(name, "a list"))?;
        let mut out = Vec::with_capacity(a.len());
        for x in a {
            out.push(
                x.as_str()
                    .ok_or_else(|| wrong_type(name, "a list of strings"))?
                    .to_owned(),
            );
        }
        if out.len() < min || out.len() > max {
            return Err(KmsError::validation(
                &field(name),
                &shown(&format!("{out:?}")),
                &format!("Member must have length between {min} and {max}"),
            ));
        }
        Ok(Some(out))
    }

    /// An optional list of objects.
    pub fn opt_objects(&self, name: &str) -> Result<Option<Vec<Params<'a>>>, AwsError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let a = v.as_array().ok_or_else(|| wrong_type(name, "a list"))?;
        a.iter()
            .map(Params::new)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional nested object.
    pub fn opt_object(&self, name: &str) -> Result<Option<Params<'a>>, AwsError> {
        self.get(name).map(Params::new).transpose()
    }

    /// An optional enum value.
    pub fn opt_enum(&self, name: &str, allowed: &[&str]) -> Result<Option<&'a str>, AwsError> {
        let Some(s) = self.opt_str(name, 0, usize::MAX)? else {
            return Ok(None);
        };
        if !allowed.contains(&s) {
            return Err(KmsError::validation(
                &field(name),
                &shown(s),
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Some(s))
    }

    /// `Limit` (1..=1000) with a default.
    pub fn limit(&self, default: usize) -> Result<usize, AwsError> {
        Ok(self
            .opt_int("Limit", 1, 1000)?
            .map_or(default, |n| n as usize))
    }

    /// `Marker`: the offset a previous page ended at.
    pub fn marker(&self) -> Result<usize, AwsError> {
        match self.opt_str("Marker", 1, 1024)? {
            None => Ok(0),
            Some(m) => m.parse().map_err(|_| KmsError::invalid_marker()),
        }
    }
}

/// The AWS "must not be null" error for a missing required member.
pub fn missing(name: &str) -> AwsError {
    KmsError::invalid(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        field(name)
    ))
}

/// Checks a value against a `^[chars]+$` pattern given as a predicate.
pub fn check_pattern(
    name: &str,
    value: &str,
    ok: impl Fn(char) -> bool,
    pattern: &str,
) -> Result<(), AwsError> {
    if value.chars().all(ok) {
        Ok(())
    } else {
        Err(KmsError::validation(
            &field(name),
            &shown(value),
            &format!("Member must satisfy regular expression pattern: {pattern}"),
        ))
    }
}

/// One page of `items` from `offset`: (page, next marker).
pub fn page<T: Clone>(
    items: &[T],
    offset: usize,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    if offset > items.len() {
        return Err(KmsError::invalid_marker());
    }
    let end = offset.saturating_add(limit).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[offset..end].to_vec(), next))
}

/// Adds `Truncated` and (if more) `NextMarker` to a list response.
pub fn paged(mut v: Value, next: Option<String>) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("Truncated".into(), Value::Bool(next.is_some()));
        if let Some(n) = next {
            m.insert("NextMarker".into(), Value::String(n));
        }
    }
    v
}

/// Base64 of bytes (for blobs in responses).
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_messages_and_types() {
        let v = json!({"KeyId": "", "Plaintext": "!!", "NumberOfBytes": 2000, "EncryptionContext": {"a": 1}, "Limit": "x"});
        let p = Params::new(&v).unwrap();
        let e = p.key_id("KeyId").unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert!(e.message.contains("at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1"), "{}", e.message);
        assert_eq!(
            p.blob("Plaintext", 1, 4096).unwrap_err().code,
            "SerializationException"
        );
        assert!(
            p.opt_int("NumberOfBytes", 1, 1024)
                .unwrap_err()
                .message
                .contains("less than or equal to 1024")
        );
        assert_eq!(
            p.opt_map("EncryptionContext").unwrap_err().code,
            "SerializationException"
        );
        assert_eq!(p.limit(100).unwrap_err().code, "SerializationException");
        assert!(
            p.str("Missing", 1, 2)
                .unwrap_err()
                .message
                .contains("Value null at 'missing'")
        );
        assert!(Params::new(&json!([1])).is_err());
    }

    #[test]
    fn paging() {
        let items: Vec<u32> = (0..5).collect();
        assert_eq!(page(&items, 0, 2).unwrap(), (vec![0, 1], Some("2".into())));
        assert_eq!(page(&items, 4, 2).unwrap(), (vec![4], None));
        assert!(page(&items, 6, 2).is_err());
    }

    proptest::proptest! {
        #[test]
        fn hostile_params_never_panic(body in "\\PC{0,300}") {
            if let Ok(v) = serde_json::from_str::<Value>(&body)
                && let Ok(p) = Params::new(&v)
            {
                let _ = p.opt_blob("CiphertextBlob", 1, 6144);
                let _ = p.opt_map("EncryptionContext");
                let _ = p.opt_str("KeyId", 1, 2048);
                let _ = p.limit(10);
                let _ = p.marker();
                let _ = p.opt_list("GrantTokens", 0, 10);
            }
        }
    }
}
