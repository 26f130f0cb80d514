//! The KMS's records in the state store (tables `kms_keys`, `kms_aliases`,
//! `kms_grants`). Key material is stored wrapped under the root key only.

use serde::{Deserialize, Serialize};

/// Store table of keys, by key id.
pub const KEYS: &str = "kms_keys";
/// Store table of aliases, by alias name.
pub const ALIASES: &str = "kms_aliases";
/// Store table of grants, by `KEYID/GRANTID`.
pub const GRANTS: &str = "kms_grants";

/// A key's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Not usable until enabled.
    Disabled,
    /// Scheduled for deletion; not usable.
    PendingDeletion,
    /// An `EXTERNAL` key without (unexpired) key material.
    PendingImport,
}

impl KeyState {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
        }
    }
}

/// One version of a key's material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Material {
    /// 1 for the original material, +1 per rotation.
    pub version: u32,
    /// The `KeyMaterialId` (64 hex digits, as AWS shows it).
    pub id: String,
    /// When this material was created (epoch seconds).
    pub created: f64,
    /// `AUTOMATIC` or `ON_DEMAND` for rotated material; `None` for the original.
    pub rotation_type: Option<String>,
    /// The material, wrapped under the root key (label `kms-key/ID/VERSION`).
    pub wrapped: Vec<u8>,
}

/// A tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A KMS key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key id (a UUID).
    pub key_id: String,
    /// The key ARN.
    pub arn: String,
    /// The owning account.
    pub account: String,
    /// The creation time (epoch seconds).
    pub created: f64,
    /// The description.
    pub description: String,
    /// The state.
    pub state: KeyState,
    /// When a key pending deletion is deleted.
    pub deletion_date: Option<f64>,
    /// The pending window of a scheduled deletion.
    pub pending_window_days: Option<u32>,
    /// `AWS` for the platform-managed key, `CUSTOMER` otherwise.
    pub key_manager: String,
    /// The key policy (policy name `default`).
    pub policy: String,
    /// Tags, in insertion order.
    pub tags: Vec<Tag>,
    /// Whether automatic rotation is on.
    pub rotation_enabled: bool,
    /// The automatic rotation period.
    pub rotation_period_days: u32,
    /// When automatic rotation next happens.
    pub next_rotation: Option<f64>,
    /// When the last on-demand rotation started.
    pub on_demand_rotation: Option<f64>,
    /// All material versions, oldest first; the last is current. Empty
    /// for an `EXTERNAL` key awaiting its material.
    pub materials: Vec<Material>,
    /// `KeySpec` (records from before asymmetric keys: symmetric).
    #[serde(default = "symmetric_default")]
    pub key_spec: String,
    /// `KeyUsage`.
    #[serde(default = "encrypt_decrypt")]
    pub key_usage: String,
    /// `Origin`: `AWS_KMS` or `EXTERNAL`.
    #[serde(default = "aws_kms")]
    pub origin: String,
    /// Imported material: `KEY_MATERIAL_EXPIRES` or `KEY_MATERIAL_DOES_NOT_EXPIRE`.
    #[serde(default)]
    pub expiration_model: Option<String>,
    /// Imported material expires at (epoch seconds).
    #[serde(default)]
    pub valid_to: Option<f64>,
    /// The id of the material first imported: later imports must bring
    /// the same material, as in AWS.
    #[serde(default)]
    pub imported_material_id: Option<String>,
    /// The open import (GetParametersForImport), if any.
    #[serde(default)]
    pub import: Option<ImportParams>,
}

fn symmetric_default() -> String {
    "SYMMETRIC_DEFAULT".into()
}
fn encrypt_decrypt() -> String {
    "ENCRYPT_DECRYPT".into()
}
fn aws_kms() -> String {
    "AWS_KMS".into()
}

/// The parameters of an open import: the wrapping key pair and the token
/// that names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportParams {
    /// The import token (hex of 32 random bytes; the client sends it back).
    pub token: String,
    /// `WrappingAlgorithm`.
    pub wrapping_algorithm: String,
    /// The wrapping private key (PKCS#8 DER), sealed under the root key
    /// with the label `kms-import/KEYID`.
    pub wrapped_private_key: Vec<u8>,
    /// The parameters expire at (epoch seconds), 24 hours after issue.
    pub valid_to: f64,
}

impl KeyRecord {
    /// The current material.
    pub fn current(&self) -> Option<&Material> {
        self.materials.last()
    }

    /// The state as the API shows it at `t`: an imported key whose
    /// material has expired is `PendingImport` from that moment on (the
    /// expired material is then purged at the next purge).
    pub fn state_at(&self, t: f64) -> KeyState {
        if self.material_expired(t) && self.state != KeyState::PendingDeletion {
            return KeyState::PendingImport;
        }
        self.state
    }

    /// Whether imported material has expired by `t`.
    pub fn material_expired(&self, t: f64) -> bool {
        self.origin == "EXTERNAL"
            && !self.materials.is_empty()
            && self.valid_to.is_some_and(|v| v <= t)
    }
}

/// An alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// `alias/...`.
    pub name: String,
    /// The alias ARN.
    pub arn: String,
    /// The key id it points to.
    pub target_key_id: String,
    /// Created (epoch seconds).
    pub created: f64,
    /// Last updated (epoch seconds).
    pub updated: f64,
}

/// Grant constraints on the encryption context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraints {
    /// The request context must contain these pairs.
    pub subset: Option<std::collections::BTreeMap<String, String>>,
    /// The request context must equal this.
    pub equals: Option<std::collections::BTreeMap<String, String>>,
}

/// A grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The key id.
    pub key_id: String,
    /// The grant id (64 hex digits).
    pub grant_id: String,
    /// The grant token (opaque to clients).
    pub token: String,
    /// The optional name.
    pub name: Option<String>,
    /// Created (epoch seconds).
    pub created: f64,
    /// Who may use the grant.
    pub grantee: String,
    /// Who may retire the grant (besides the grantee when it has RetireGrant).
    pub retiring: Option<String>,
    /// The account that created the grant (`arn:aws:iam::ACCOUNT:root`).
    pub issuing_account: String,
    /// The permitted operations.
    pub operations: Vec<String>,
    /// Encryption context constraints.
    pub constraints: Option<Constraints>,
}

/// The current time as epoch seconds with millisecond precision (the JSON
/// 1.1 timestamp form).
pub fn now() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key stored before asymmetric keys existed loads as the symmetric,
    /// KMS-made key it was.
    #[test]
    fn records_from_before_key_specs_load_as_symmetric() {
        let old = serde_json::json!({
            "key_id": "k", "arn": "arn:aws:kms:us-east-1:1:key/k", "account": "1",
            "created": 1.0, "description": "", "state": "Enabled", "deletion_date": null,
            "pending_window_days": null, "key_manager": "AWS", "policy": "{}", "tags": [],
            "rotation_enabled": true, "rotation_period_days": 365, "next_rotation": null,
            "on_demand_rotation": null, "materials": []
        });
        let rec: KeyRecord = serde_json::from_value(old).unwrap();
        assert_eq!(rec.key_spec, "SYMMETRIC_DEFAULT");
        assert_eq!(rec.key_usage, "ENCRYPT_DECRYPT");
        assert_eq!(rec.origin, "AWS_KMS");
        assert!(rec.import.is_none() && rec.valid_to.is_none());
        assert_eq!(rec.state_at(now()), KeyState::Enabled);
    }
}
