//! The KMS errors, by AWS error code, with AWS's messages.

use ferry_proto::AwsError;

/// Builders for the errors the KMS API returns.
pub struct KmsError;

impl KmsError {
    /// `NotFoundException` for a key id or ARN.
    pub fn key_not_found(key: &str) -> AwsError {
        AwsError::client("NotFoundException", format!("Key '{key}' does not exist"))
    }
    /// `NotFoundException` for an alias.
    pub fn alias_not_found(alias_arn: &str) -> AwsError {
        AwsError::client(
            "NotFoundException",
            format!("Alias '{alias_arn}' is not found."),
        )
    }
    /// `NotFoundException` for a key id that is neither an id, an ARN nor an alias.
    pub fn invalid_key_id(key: &str) -> AwsError {
        AwsError::client("NotFoundException", format!("Invalid keyId '{key}'"))
    }
    /// `InvalidArnException`.
    pub fn invalid_arn(arn: &str) -> AwsError {
        AwsError::client("InvalidArnException", format!("Invalid arn {arn}"))
    }
    /// `DisabledException`.
    pub fn disabled(arn: &str) -> AwsError {
        AwsError::client("DisabledException", format!("{arn} is disabled."))
    }
    /// `KMSInvalidStateException` for a key pending deletion.
    pub fn pending_deletion(arn: &str) -> AwsError {
        AwsError::client(
            "KMSInvalidStateException",
            format!("{arn} is pending deletion."),
        )
    }
    /// `KMSInvalidStateException` for an `EXTERNAL` key without material.
    pub fn pending_import(arn: &str) -> AwsError {
        AwsError::client(
            "KMSInvalidStateException",
            format!("{arn} is pending import."),
        )
    }
    /// `InvalidKeyUsageException` in AWS's words.
    pub fn key_usage(arn: &str, usage: &str, op: &str) -> AwsError {
        AwsError::client(
            "InvalidKeyUsageException",
            format!("{arn} key usage is {usage} which is not valid for {op}."),
        )
    }
    /// `KMSInvalidStateException` with a message.
    pub fn invalid_state(msg: impl Into<String>) -> AwsError {
        AwsError::client("KMSInvalidStateException", msg)
    }
    /// `InvalidCiphertextException`; never says why (no oracle).
    pub fn invalid_ciphertext() -> AwsError {
        AwsError::client("InvalidCiphertextException", "")
    }
    /// `IncorrectKeyException`.
    pub fn incorrect_key() -> AwsError {
        AwsError::client(
            "IncorrectKeyException",
            "The key ID in the request does not identify a CMK that can perform this operation.",
        )
    }
    /// `DryRunOperationException`: the request would have succeeded.
    pub fn dry_run() -> AwsError {
        AwsError::client(
            "DryRunOperationException",
            "The request would have succeeded, but the DryRun option is set.",
        )
        .with_status(412)
    }
    /// Whether `e` is the answer of a dry run whose checks all passed.
    pub fn is_dry_run(e: &AwsError) -> bool {
        e.code == "DryRunOperationException"
    }
    /// `ValidationException` in AWS's "1 validation error detected" form.
    pub fn validation(field: &str, value: &str, constraint: &str) -> AwsError {
        AwsError::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }
    /// `ValidationException` with a free message.
    pub fn invalid(msg: impl Into<String>) -> AwsError {
        AwsError::validation(msg)
    }
    /// `UnsupportedOperationException`.
    pub fn unsupported(msg: impl Into<String>) -> AwsError {
        AwsError::client("UnsupportedOperationException", msg)
    }
    /// `KMSInternalException` (HTTP 500); the message carries no secrets.
    pub fn internal(msg: impl Into<String>) -> AwsError {
        AwsError::server("KMSInternalException", msg)
    }
    /// `SerializationException` for a body that does not parse.
    pub fn serialization(msg: impl Into<String>) -> AwsError {
        AwsError::client("SerializationException", msg)
    }
    /// `InvalidGrantTokenException`.
    pub fn invalid_grant_token() -> AwsError {
        AwsError::client(
            "InvalidGrantTokenException",
            "The grant token is not valid.",
        )
    }
    /// `InvalidGrantIdException`.
    pub fn invalid_grant_id(id: &str) -> AwsError {
        AwsError::client(
            "InvalidGrantIdException",
            format!("Grant ID {id} is not valid."),
        )
    }
    /// `InvalidMarkerException`.
    pub fn invalid_marker() -> AwsError {
        AwsError::client(
            "InvalidMarkerException",
            "The marker that specifies where pagination should next begin is not valid.",
        )
    }
}

/// Maps a store failure to `KMSInternalException`, logging the cause.
pub fn store_fault(e: ferry_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "KMS state store failure");
    KmsError::internal("The key store failed; the request was not completed.")
}
