//! A task volume as its host holds it (the web console's task page and
//! compliance summary): what `ferry-host` reports and the console shows.

/// What the host can say about a task's volume (the web console's task
/// page): nothing secret, the token holds the *wrapped* data key only.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFacts {
    /// The volume's size: what admission promised the task, bytes.
    pub size_bytes: u64,
    /// Bytes in use on the mounted ext4 (statvfs of its root:
    /// `(blocks - bfree) * frsize`, so ext4's own metadata counts).
    pub used_bytes: u64,
    /// LUKS2 (platform version 1.4.0) rather than plain ext4 (1.3.0).
    pub encrypted: bool,
    /// The data segment's cipher as `cryptsetup luksDump` names it.
    pub cipher: Option<String>,
    /// The volume key's size in bits.
    pub key_bits: Option<u32>,
    /// The KMS key that wraps the data key (the grant kept at attach).
    pub key_arn: Option<String>,
    /// The grant that let the platform unwrap the data key.
    pub grant_id: Option<String>,
    /// LUKS2 token 0 as the header holds it (`type`, `keyslots`, `keyArn`,
    /// `wrappedDataKey`, `encryptionContext`); `None` if it cannot be read
    /// (e.g. the volume is being shredded as the task stops).
    pub token: Option<serde_json::Value>,
}
