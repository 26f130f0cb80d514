//! Wire shapes shared by several operations, named and spelled as in
//! botocore's `ecs` model. Operation-specific requests and responses live
//! with their operation in [`crate::ops`].

pub mod cluster;
pub mod service;
pub mod task;
pub mod task_definition;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

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
    /// The ARN (or the name as given) of the item; none for a task that
    /// fits on no host (it never got one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
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
            arn: Some(arn.into()),
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

/// `NetworkConfiguration` (RunTask, CreateService, UpdateService; kept in
/// the service record and echoed by DescribeServices).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfiguration {
    /// `awsvpcConfiguration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awsvpc_configuration: Option<AwsVpcConfiguration>,
}

/// `AwsVpcConfiguration`. Fields are in alphabetical order, and absent ones
/// are omitted, because service records stored before this type existed
/// kept the client's JSON as a `serde_json::Value` (whose keys serialize
/// sorted): a record serializes to the same bytes either way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsVpcConfiguration {
    /// `ENABLED` or `DISABLED`; recorded and echoed only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "ignore_malformed"
    )]
    pub assign_public_ip: Option<String>,
    /// Security groups; recorded and echoed only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "ignore_malformed"
    )]
    pub security_groups: Option<Vec<String>>,
    /// Subnets (ferry records the first as the ENI's subnet).
    #[serde(default)]
    pub subnets: Vec<String>,
}

/// A field ferry only records: a value of the wrong type reads as absent.
/// Earlier servers ignored these fields in RunTask and kept services'
/// network configuration as raw JSON, so neither a request nor a stored
/// record that was accepted then may fail to parse now.
fn ignore_malformed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}
