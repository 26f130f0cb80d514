//! Image names: `httpd:2.4` and `docker.io/library/httpd:2.4` are the same
//! image. References are normalized the way Docker does it so that every
//! spelling of a name maps to one key in the store.

use std::fmt;

/// A normalized image reference: `REGISTRY/REPOSITORY:TAG` or
/// `REGISTRY/REPOSITORY@sha256:...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host (`docker.io` by default), with port if any.
    pub registry: String,
    /// Repository path (`library/httpd`).
    pub repository: String,
    /// Tag, or `None` when pinned by digest.
    pub tag: Option<String>,
    /// `sha256:...` when pinned by digest.
    pub digest: Option<String>,
}

/// Why a reference does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {input:?}: {why}")]
pub struct ReferenceError {
    input: String,
    why: &'static str,
}

const DEFAULT_REGISTRY: &str = "docker.io";

impl Reference {
    /// Parses and normalizes `s` (default registry `docker.io`, default
    /// namespace `library/`, default tag `latest`).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let err = |why| ReferenceError {
            input: s.to_string(),
            why,
        };
        if s.is_empty() || s.len() > 255 {
            return Err(err("empty or longer than 255 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| err("digest must be sha256:<64 hex>"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(err("digest must be sha256:<64 hex>"));
                }
                (r, Some(d.to_ascii_lowercase()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-'))
        {
            return Err(err("tag must be 1-128 of [A-Za-z0-9_.-]"));
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        if repository.is_empty()
            || repository.split('/').any(|c| {
                c.is_empty()
                    || !c.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || b == b'.'
                            || b == b'_'
                            || b == b'-'
                    })
            })
        {
            return Err(err("repository must be lowercase [a-z0-9._-] components"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The short form users write: `httpd:2.4` for Docker Hub library images.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{name}:{t}"),
            (None, Some(d)) => format!("{name}@{d}"),
            (None, None) => name,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("httpd:2.4"), "docker.io/library/httpd:2.4");
        assert_eq!(
            norm("docker.io/library/httpd:2.4"),
            "docker.io/library/httpd:2.4"
        );
        assert_eq!(norm("httpd"), "docker.io/library/httpd:latest");
        assert_eq!(
            norm("index.docker.io/library/httpd"),
            "docker.io/library/httpd:latest"
        );
        assert_eq!(norm("me/app:1"), "docker.io/me/app:1");
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("httpd@{d}")),
            format!("docker.io/library/httpd@{d}")
        );
    }

    #[test]
    fn familiar_round_trips() {
        let r = Reference::parse("docker.io/library/httpd:2.4").unwrap();
        assert_eq!(r.familiar(), "httpd:2.4");
        assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "HTTPD",
            "httpd:",
            "httpd:a b",
            "a//b",
            "httpd@sha256:xyz",
            "x:y/z:",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
