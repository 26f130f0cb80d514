//! Parameter Store's stored records and names.
//!
//! Two tables: `ssm-parameters`, one record per parameter keyed by name,
//! with its current version (so a read is one lookup); `ssm-history`, every
//! version keyed `NAME|VERSION` (`|` cannot occur in a name), which
//! GetParameterHistory and `name:version` selectors read.

use ferry_proto::AwsError;
use serde::{Deserialize, Serialize};

use super::errors;
use crate::util::Tag;

/// The parameters table.
pub(crate) const PARAMETERS: &str = "ssm-parameters";
/// The versions table.
pub(crate) const HISTORY: &str = "ssm-history";

/// How many versions a parameter keeps (AWS's limit; the oldest goes).
pub(crate) const MAX_VERSIONS: u64 = 100;

/// A hierarchy has at most this many levels.
const MAX_LEVELS: usize = 15;

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterType {
    /// A plain string.
    String,
    /// A comma-separated list of strings.
    StringList,
    /// A string sealed under a KMS data key.
    SecureString,
}

impl ParameterType {
    /// The model's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::StringList => "StringList",
            Self::SecureString => "SecureString",
        }
    }

    /// Parses the model's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "String" => Self::String,
            "StringList" => Self::StringList,
            "SecureString" => Self::SecureString,
            _ => return None,
        })
    }
}

/// A stored value: plain for String and StringList, sealed for SecureString.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "lowercase")]
pub(crate) enum Stored {
    Plain {
        value: String,
    },
    Sealed {
        #[serde(with = "crate::util::b64_bytes")]
        sealed: Vec<u8>,
    },
}

/// One version of a parameter (also the current one, in its record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Version {
    pub version: u64,
    pub kind: ParameterType,
    /// SecureString only: the `KeyId` as given (`alias/aws/ssm` by default).
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_pattern: Option<String>,
    pub tier: String,
    pub data_type: String,
    pub last_modified: f64,
    pub last_modified_user: String,
    pub value: Stored,
}

/// One parameter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ParameterRecord {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The current version.
    pub current: Version,
}

/// The key of a version in [`HISTORY`].
pub(crate) fn history_key(name: &str, version: u64) -> String {
    format!("{name}|{version:020}")
}

/// The prefix of a parameter's versions in [`HISTORY`].
pub(crate) fn history_prefix(name: &str) -> String {
    format!("{name}|")
}

/// Checks a name for PutParameter: letters, digits, `.-_`, sub-paths
/// divided by `/` (then it starts with `/`), not prefixed with `aws` or
/// `ssm`, at most 15 levels.
pub(crate) fn check_name(name: &str) -> Result<(), AwsError> {
    crate::util::check_len("name", name, 1, 2048)?;
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_/".contains(c));
    let first = name.trim_start_matches('/');
    let reserved = {
        let l = first.to_ascii_lowercase();
        l.starts_with("aws") || l.starts_with("ssm")
    };
    if !valid_chars || reserved {
        return Err(errors::bad_name());
    }
    if name.contains('/') {
        if !name.starts_with('/') {
            return Err(AwsError::validation(
                "Parameter name must be a fully qualified name.",
            ));
        }
        if name.ends_with('/') || name.contains("//") {
            return Err(errors::bad_name());
        }
        if name.matches('/').count() > MAX_LEVELS {
            return Err(AwsError::client(
                "HierarchyLevelLimitExceededException",
                format!("A hierarchy can have a maximum of {MAX_LEVELS} levels."),
            ));
        }
    }
    Ok(())
}

/// Checks a path for GetParametersByPath and normalizes it: it starts
/// with `/` and names sub-paths; a trailing `/` is dropped (except `/`).
pub(crate) fn check_path(path: &str) -> Result<String, AwsError> {
    crate::util::check_len("path", path, 1, 2048)?;
    let ok = path.starts_with('/')
        && !path.contains("//")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/".contains(c));
    if !ok {
        return Err(AwsError::validation(
            "The parameter doesn't meet the parameter name requirements. The parameter name must \
             begin with a forward slash \"/\". It can't be prefixed with \"aws\" or \"ssm\" \
             (case-insensitive). It must use only letters, numbers, or the following symbols: . \
             (period), - (hyphen), _ (underscore). Special characters are not allowed. All \
             sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: \
             /get/parameters2-/by1./path0_.",
        ));
    }
    if path.len() > 1 {
        Ok(path.trim_end_matches('/').to_owned())
    } else {
        Ok(path.to_owned())
    }
}

/// Whether `name` is under `path` (`/` for the root), directly or, with
/// `recursive`, at any depth.
pub(crate) fn under(name: &str, path: &str, recursive: bool) -> bool {
    let prefix = if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    };
    match name.strip_prefix(&prefix) {
        Some(rest) => !rest.is_empty() && (recursive || !rest.contains('/')),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn names() {
        for ok in ["db", "/db", "/prod/db/password", "a.b-c_d", "/x/y.z"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a b", "/aws/x", "ssm-x", "AWSfoo", "/a//b", "/a/", "a:b", "é",
        ] {
            assert_eq!(
                check_name(bad).unwrap_err().code,
                "ValidationException",
                "{bad}"
            );
        }
        assert_eq!(
            check_name("a/b").unwrap_err().message,
            "Parameter name must be a fully qualified name."
        );
        let deep = "/a".repeat(16);
        assert_eq!(
            check_name(&deep).unwrap_err().code,
            "HierarchyLevelLimitExceededException"
        );
        assert!(check_name(&"/a".repeat(15)).is_ok());
    }

    #[test]
    fn paths() {
        assert_eq!(check_path("/a/b/").unwrap(), "/a/b");
        assert_eq!(check_path("/").unwrap(), "/");
        assert!(check_path("a").is_err());
        assert!(under("/a/b", "/a", false));
        assert!(!under("/a/b/c", "/a", false));
        assert!(under("/a/b/c", "/a", true));
        assert!(!under("/ab", "/a", true));
        assert!(!under("/a", "/a", true));
        assert!(under("/a", "/", false));
        assert!(!under("/a/b", "/", false));
        assert!(under("/a/b", "/", true));
        assert!(!under("a", "/", true));
    }

    #[test]
    fn history_keys_sort_by_version() {
        assert!(history_key("/a", 9) < history_key("/a", 10));
        assert!(history_key("/a", 1).starts_with(&history_prefix("/a")));
        assert!(!history_key("/a/b", 1).starts_with(&history_prefix("/a")));
    }
}
