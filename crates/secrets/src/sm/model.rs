//! Secrets Manager's stored records, names and ARNs.
//!
//! Two tables: `secretsmanager-secrets` holds one record per secret, keyed
//! by name (metadata, versions and their staging labels, never a value);
//! `secretsmanager-values` holds each version's sealed value, keyed by
//! `ARN|VERSION_ID`, so that reading one version does not read them all.

use std::collections::BTreeMap;

use ferry_proto::AwsError;
use serde::{Deserialize, Serialize};

use crate::util::Tag;

/// The secrets table.
pub(crate) const SECRETS: &str = "secretsmanager-secrets";
/// The sealed values table.
pub(crate) const VALUES: &str = "secretsmanager-values";

/// The staging label of the current version.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The staging label of the version before the current one.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// How many versions a secret keeps: AWS removes versions without a
/// staging label beyond this.
pub(crate) const MAX_VERSIONS: usize = 100;

/// One secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecretRecord {
    pub arn: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The `KmsKeyId` as the user gave it; `None`: `aws/secretsmanager`.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub created: f64,
    pub last_changed: f64,
    /// Midnight UTC of the day of the last GetSecretValue.
    #[serde(default)]
    pub last_accessed: Option<f64>,
    /// When DeleteSecret was called (pending deletion).
    #[serde(default)]
    pub deleted: Option<f64>,
    /// When a secret pending deletion goes for good.
    #[serde(default)]
    pub delete_after: Option<f64>,
    /// The resource policy's text.
    #[serde(default)]
    pub policy: Option<String>,
    /// By version id.
    #[serde(default)]
    pub versions: BTreeMap<String, VersionMeta>,
}

/// One version's metadata (its value is in [`VALUES`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VersionMeta {
    pub created: f64,
    #[serde(default)]
    pub stages: Vec<String>,
    pub kind: ValueKind,
    /// The ARN of the KMS key its data key is wrapped under.
    pub key_arn: String,
}

/// Whether a version holds a `SecretString` or a `SecretBinary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ValueKind {
    String,
    Binary,
}

impl ValueKind {
    /// The member name, also the sealing label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::String => "SecretString",
            Self::Binary => "SecretBinary",
        }
    }
}

/// One sealed value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredValue {
    #[serde(with = "crate::util::b64_bytes")]
    pub sealed: Vec<u8>,
}

/// The key of a version's value.
pub(crate) fn value_key(arn: &str, version_id: &str) -> String {
    format!("{arn}|{version_id}")
}

impl SecretRecord {
    /// The version holding `stage`.
    pub(crate) fn with_stage(&self, stage: &str) -> Option<(&String, &VersionMeta)> {
        self.versions
            .iter()
            .find(|(_, v)| v.stages.iter().any(|s| s == stage))
    }

    /// `VersionIdsToStages`: the versions that have a staging label.
    pub(crate) fn stages_map(&self) -> BTreeMap<&str, &[String]> {
        self.versions
            .iter()
            .filter(|(_, v)| !v.stages.is_empty())
            .map(|(k, v)| (k.as_str(), v.stages.as_slice()))
            .collect()
    }

    /// Attaches `stages` to `version_id`, taking each from the version
    /// that had it; AWSCURRENT's previous holder becomes AWSPREVIOUS.
    pub(crate) fn move_stages(&mut self, version_id: &str, stages: &[String]) {
        let previous_current = self
            .with_stage(AWSCURRENT)
            .map(|(k, _)| k.clone())
            .filter(|k| k != version_id);
        let moves_current = stages.iter().any(|s| s == AWSCURRENT);
        for (id, v) in &mut self.versions {
            if id != version_id {
                v.stages.retain(|s| !stages.contains(s));
            }
        }
        if moves_current && let Some(prev) = previous_current {
            for (id, v) in &mut self.versions {
                if *id != prev {
                    v.stages.retain(|s| s != AWSPREVIOUS);
                }
            }
            if let Some(v) = self.versions.get_mut(&prev)
                && !v.stages.iter().any(|s| s == AWSPREVIOUS)
            {
                v.stages.push(AWSPREVIOUS.to_owned());
            }
        }
        if let Some(v) = self.versions.get_mut(version_id) {
            for s in stages {
                if !v.stages.contains(s) {
                    v.stages.push(s.clone());
                }
            }
        }
    }

    /// Removes the oldest versions without a staging label beyond
    /// [`MAX_VERSIONS`]; returns their ids (their values must go too).
    pub(crate) fn prune(&mut self) -> Vec<String> {
        let mut deprecated: Vec<(f64, String)> = self
            .versions
            .iter()
            .filter(|(_, v)| v.stages.is_empty())
            .map(|(k, v)| (v.created, k.clone()))
            .collect();
        deprecated.sort_by(|a, b| a.0.total_cmp(&b.0));
        let excess = self.versions.len().saturating_sub(MAX_VERSIONS);
        let gone: Vec<String> = deprecated
            .into_iter()
            .take(excess)
            .map(|(_, k)| k)
            .collect();
        for k in &gone {
            self.versions.remove(k);
        }
        gone
    }
}

/// Checks a secret name: 1..=512 characters from `A-Za-z0-9/_+=.@-`.
pub(crate) fn check_name(name: &str) -> Result<(), AwsError> {
    crate::util::check_len("name", name, 1, 512)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
    {
        return Err(AwsError::validation(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
        ));
    }
    Ok(())
}

/// A new secret's ARN: the name and a hyphen with six random characters,
/// as AWS makes them (so a re-created secret gets another ARN).
pub(crate) fn new_arn(prefix: &str, name: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = rand::rng();
    let suffix: String = (0..6)
        .map(|_| char::from(ALPHABET[r.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{prefix}{name}-{suffix}")
}

/// Whether `s` ends like a full ARN's name part: `-` and six letters or
/// digits.
pub(crate) fn has_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 7 && b[b.len() - 7] == b'-' && b[b.len() - 6..].iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn rec() -> SecretRecord {
        SecretRecord {
            arn: "a".into(),
            name: "n".into(),
            description: None,
            kms_key_id: None,
            tags: vec![],
            created: 0.0,
            last_changed: 0.0,
            last_accessed: None,
            deleted: None,
            delete_after: None,
            policy: None,
            versions: BTreeMap::new(),
        }
    }

    fn add(r: &mut SecretRecord, id: &str, t: f64, stages: &[&str]) {
        r.versions.insert(
            id.into(),
            VersionMeta {
                created: t,
                stages: vec![],
                kind: ValueKind::String,
                key_arn: "k".into(),
            },
        );
        let stages: Vec<String> = stages.iter().map(|s| s.to_string()).collect();
        r.move_stages(id, &stages);
    }

    #[test]
    fn stages_move_and_current_becomes_previous() {
        let mut r = rec();
        add(&mut r, "v1", 1.0, &[AWSCURRENT]);
        add(&mut r, "v2", 2.0, &[AWSCURRENT]);
        assert_eq!(r.versions["v1"].stages, vec![AWSPREVIOUS]);
        assert_eq!(r.versions["v2"].stages, vec![AWSCURRENT]);
        add(&mut r, "v3", 3.0, &["AWSPENDING"]);
        assert_eq!(r.with_stage(AWSCURRENT).unwrap().0, "v2");
        add(&mut r, "v4", 4.0, &[AWSCURRENT, "custom"]);
        assert!(r.versions["v1"].stages.is_empty());
        assert_eq!(r.versions["v2"].stages, vec![AWSPREVIOUS]);
        assert_eq!(r.versions["v3"].stages, vec!["AWSPENDING"]);
        assert_eq!(r.stages_map().len(), 3);
        // Moving AWSCURRENT back to v2: v4 becomes AWSPREVIOUS, keeps custom.
        r.move_stages("v2", &[AWSCURRENT.to_owned()]);
        assert_eq!(r.versions["v2"].stages, vec![AWSCURRENT]);
        assert_eq!(r.versions["v4"].stages, vec!["custom", AWSPREVIOUS]);
    }

    #[test]
    fn prune_drops_oldest_unlabelled_beyond_the_limit() {
        let mut r = rec();
        for i in 0..(MAX_VERSIONS + 3) {
            add(&mut r, &format!("v{i:03}"), i as f64, &[AWSCURRENT]);
        }
        let gone = r.prune();
        assert_eq!(gone, vec!["v000", "v001", "v002"]);
        assert_eq!(r.versions.len(), MAX_VERSIONS);
        assert!(r.versions.contains_key("v101"));
    }

    #[test]
    fn names_and_arns() {
        assert!(check_name("prod/db_password+x=y.z@w-1").is_ok());
        assert_eq!(check_name("a b").unwrap_err().code, "ValidationException");
        assert!(check_name("").is_err());
        let arn = new_arn("arn:aws:secretsmanager:us-east-1:1:secret:", "db");
        assert!(has_suffix(&arn), "{arn}");
        assert!(arn.starts_with("arn:aws:secretsmanager:us-east-1:1:secret:db-"));
        assert!(!has_suffix("db"));
        assert!(!has_suffix("db-abc"));
    }
}
