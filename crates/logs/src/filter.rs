//! CloudWatch Logs filter patterns: the term subset.
//!
//! Supported: the empty pattern (everything), space-separated terms that must
//! all occur (case-sensitive, as CloudWatch matches), double-quoted phrases,
//! `?term` alternatives (any one of them), and `-term` exclusions. JSON
//! (`{ ... }`) and space-delimited (`[ ... ]`) patterns are refused with a
//! clear error rather than silently matching wrongly.

use ferry_proto::AwsError;

use crate::service::invalid;

/// A parsed pattern.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pattern {
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

impl Pattern {
    pub(crate) fn parse(src: &str) -> Result<Self, AwsError> {
        let src = src.trim();
        if src.starts_with('{') || src.starts_with('[') {
            return Err(invalid(
                "ferry supports term filter patterns only (terms, \"phrases\", ?alternatives, -exclusions); JSON and space-delimited patterns are not supported",
            ));
        }
        let mut p = Pattern::default();
        let mut rest = src;
        while !rest.is_empty() {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let (kind, body) = match rest.as_bytes()[0] {
                b'?' => (1, &rest[1..]),
                b'-' => (2, &rest[1..]),
                _ => (0, rest),
            };
            let (term, after) = if let Some(q) = body.strip_prefix('"') {
                let end = q
                    .find('"')
                    .ok_or_else(|| invalid("Invalid filter pattern: unterminated quoted phrase"))?;
                (&q[..end], &q[end + 1..])
            } else {
                let end = body.find(char::is_whitespace).unwrap_or(body.len());
                (&body[..end], &body[end..])
            };
            if term.is_empty() {
                return Err(invalid("Invalid filter pattern: empty term"));
            }
            match kind {
                1 => p.any.push(term.to_owned()),
                2 => p.none.push(term.to_owned()),
                _ => p.all.push(term.to_owned()),
            }
            rest = after;
        }
        Ok(p)
    }

    /// The values TestMetricFilter reports for a matching message (term
    /// patterns extract none); `None` when it does not match.
    pub(crate) fn extract(
        &self,
        message: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.matches(message).then(Default::default)
    }

    pub(crate) fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn terms_phrases_alternatives_exclusions() {
        let p = Pattern::parse("").unwrap();
        assert!(p.matches("anything"));
        let p = Pattern::parse("GET \"HTTP/1.1\" 200").unwrap();
        assert!(p.matches("GET /index.html HTTP/1.1 200"));
        assert!(!p.matches("GET /index.html HTTP/1.0 200"));
        let p = Pattern::parse("?ERROR ?WARN -healthcheck").unwrap();
        assert!(p.matches("WARN disk"));
        assert!(!p.matches("INFO disk"));
        assert!(!p.matches("ERROR healthcheck"));
        assert!(Pattern::parse("{ $.a = 1 }").is_err());
        assert!(Pattern::parse("\"open").is_err());
    }
}
