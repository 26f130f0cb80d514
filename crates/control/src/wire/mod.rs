//! Wire shapes shared by several operations, named and spelled as in
//! botocore's `ecs` model. Operation-specific requests and responses live
//! with their operation in [`crate::ops`].

pub mod cluster;
pub mod task;
pub mod task_definition;

use serde::{Deserialize, Serialize};

/// `Tag`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    #[serde(default)]
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// `KeyValuePair`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyValuePair {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl KeyValuePair {
    /// A pair with both halves set.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }
}

/// `Failure`: one item of a batch call that could not be served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The ARN (or the name as given) of the item.
    pub arn: String,
    /// Why, e.g. `MISSING`.
    pub reason: String,
    /// More detail, when there is any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Failure {
    /// The `MISSING` failure ECS reports for unknown items.
    pub fn missing(arn: impl Into<String>) -> Self {
        Self {
            arn: arn.into(),
            reason: "MISSING".into(),
            detail: None,
        }
    }
}

/// `EphemeralStorage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralStorage {
    /// Size in GiB.
    #[serde(rename = "sizeInGiB")]
    pub size_in_gib: i64,
}
