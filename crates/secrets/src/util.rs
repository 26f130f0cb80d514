//! What both services share: time, tags, pagination tokens, base64 at the
//! store boundary, and the model's validation messages.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ferry_proto::AwsError;
use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, with millisecond precision (the JSON 1.1
/// timestamp form).
pub(crate) fn now() -> f64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    ms as f64 / 1000.0
}

/// Midnight (UTC) of the day `t` falls in: AWS records "last accessed" to
/// the day, which also keeps reads from writing more than once a day.
pub(crate) fn day_of(t: f64) -> f64 {
    (t / 86_400.0).floor() * 86_400.0
}

/// A resource tag, as both services' models spell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// Validates tags against the models' limits (keys 1..=128, values
/// 0..=256, at most 50 on a resource).
pub(crate) fn check_tags(tags: &[Tag], code: &str) -> Result<(), AwsError> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(AwsError::client(
                code,
                "A tag key must be between 1 and 128 characters long.",
            ));
        }
        if t.value.chars().count() > 256 {
            return Err(AwsError::client(
                code,
                "A tag value must be at most 256 characters long.",
            ));
        }
    }
    if tags.len() > 50 {
        return Err(AwsError::client(
            code,
            "A resource can have at most 50 tags.",
        ));
    }
    Ok(())
}

/// Merges `new` into `tags` (a new value replaces an old one of the same key).
pub(crate) fn merge_tags(tags: &mut Vec<Tag>, new: Vec<Tag>) {
    for t in new {
        match tags.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value = t.value,
            None => tags.push(t),
        }
    }
}

/// The model's length constraint message (AWS's wording). The value is
/// never echoed: it may be a secret.
pub(crate) fn check_len(member: &str, value: &str, min: usize, max: usize) -> Result<(), AwsError> {
    check_count(member, value.chars().count(), min, max)
}

/// [`check_len`] for a length already counted (bytes of a blob).
pub(crate) fn check_count(member: &str, n: usize, min: usize, max: usize) -> Result<(), AwsError> {
    let what = if n < min {
        format!("greater than or equal to {min}")
    } else if n > max {
        format!("less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(AwsError::validation(format!(
        "1 validation error detected: Value at '{member}' failed to satisfy constraint: \
         Member must have length {what}"
    )))
}

/// The model's range constraint message for numbers.
pub(crate) fn check_range(member: &str, value: i64, min: i64, max: i64) -> Result<(), AwsError> {
    let what = if value < min {
        format!("greater than or equal to {min}")
    } else if value > max {
        format!("less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(AwsError::validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: \
         Member must have value {what}"
    )))
}

/// Base64 (standard alphabet), as JSON 1.1 carries blobs.
pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a JSON 1.1 blob member.
pub(crate) fn unb64(member: &str, s: &str) -> Result<Vec<u8>, AwsError> {
    STANDARD.decode(s).map_err(|_| {
        AwsError::client(
            "SerializationException",
            format!("{member} is not valid base64."),
        )
    })
}

/// Pagination tokens: an opaque form of the position of the next item.
pub(crate) mod token {
    use super::*;

    /// The token for the page starting at `offset`.
    pub(crate) fn make(offset: usize) -> String {
        URL_SAFE_NO_PAD.encode(format!("ferry-page:{offset}"))
    }

    /// The position a token carries; 0 without one.
    pub(crate) fn parse(
        token: Option<&str>,
        err: impl Fn() -> AwsError,
    ) -> Result<usize, AwsError> {
        let Some(t) = token else { return Ok(0) };
        URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("ferry-page:").and_then(|n| n.parse().ok()))
            .ok_or_else(err)
    }
}

/// Serde for byte strings stored as base64 in JSON records.
pub(crate) mod b64_bytes {
    use super::*;

    pub(crate) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// The page of `items` at `start` of at most `limit`, and the next token.
pub(crate) fn page<T>(items: Vec<T>, start: usize, limit: usize) -> (Vec<T>, Option<String>) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = (start + limit < total).then(|| token::make(start + limit));
    (page, next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn tokens_and_pages() {
        let (p, next) = page((0..5).collect::<Vec<_>>(), 0, 2);
        assert_eq!(p, vec![0, 1]);
        let start = token::parse(next.as_deref(), || AwsError::validation("bad")).unwrap();
        assert_eq!(start, 2);
        let (p, next) = page((0..5).collect::<Vec<_>>(), 4, 2);
        assert_eq!(p, vec![4]);
        assert!(next.is_none());
        assert!(token::parse(Some("nope"), || AwsError::validation("bad")).is_err());
    }

    #[test]
    fn validation_messages() {
        let e = check_len("name", "", 1, 512).unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert!(e.message.contains("at 'name'"), "{}", e.message);
        assert!(check_len("name", "abc", 1, 3).is_ok());
        assert!(check_range("maxResults", 0, 1, 10).is_err());
        assert_eq!(day_of(86_400.0 * 3.5), 86_400.0 * 3.0);
    }
}
