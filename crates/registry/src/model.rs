//! The registry's records in the state store. They hold names, digests,
//! sizes, tags and media types only: every byte of image content (layers,
//! configs and manifests alike) is a sealed blob on disk.

use serde::{Deserialize, Serialize};

/// Repositories by name.
pub const REPOS: &str = "ecr-repositories";
/// Images by `NAME@DIGEST` (`@` cannot occur in a repository name).
pub const IMAGES: &str = "ecr-images";
/// The registry's own settings (the sealed token key).
pub const SETTINGS: &str = "ecr-settings";

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The key.
    #[serde(rename = "Key")]
    pub key: String,
    /// The value.
    #[serde(rename = "Value", default)]
    pub value: String,
}

/// A repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoRecord {
    /// Its name.
    pub name: String,
    /// A unique id: its directory under `DATA/registry/`, so a repository
    /// created again under a deleted one's name shares nothing with it.
    pub id: String,
    /// Its ARN.
    pub arn: String,
    /// Creation time, seconds since the epoch.
    pub created_at: f64,
    /// `MUTABLE` or `IMMUTABLE`.
    pub mutability: String,
    /// `AES256` or `KMS`, as the caller asked.
    pub encryption_type: String,
    /// The KMS key the repository's data keys come from (ARN).
    pub key_arn: String,
    /// Whether the caller named that key (shown as `kmsKey`).
    pub customer_key: bool,
    /// The grant made for `ecr.amazonaws.com` on the key.
    pub grant_id: String,
    /// `imageScanningConfiguration.scanOnPush` (accepted, not acted on).
    pub scan_on_push: bool,
    /// Resource tags.
    pub tags: Vec<Tag>,
    /// The lifecycle policy's text.
    pub lifecycle_policy: Option<String>,
    /// When the lifecycle policy last ran.
    pub lifecycle_evaluated_at: Option<f64>,
}

/// One image (manifest) in a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// The config's media type (ECR's `artifactMediaType`), if any.
    pub artifact_media_type: Option<String>,
    /// The manifest's own size.
    pub manifest_size: u64,
    /// The image's size: its layers' sizes (ECR's `imageSizeInBytes`).
    pub size: u64,
    /// When it was pushed, seconds since the epoch.
    pub pushed_at: f64,
    /// Its tags.
    pub tags: Vec<String>,
    /// The blobs and manifests it references (config, layers, an index's
    /// manifests): what garbage collection keeps.
    pub refs: Vec<String>,
}

/// The key of an image record.
pub fn image_key(repo: &str, digest: &str) -> String {
    format!("{repo}@{digest}")
}

/// The prefix of a repository's image records.
pub fn image_prefix(repo: &str) -> String {
    format!("{repo}@")
}
