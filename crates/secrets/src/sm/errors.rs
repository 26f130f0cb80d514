//! Secrets Manager's errors, by AWS error code, with AWS's messages.

use ferry_proto::AwsError;

use crate::seal::SealError;

/// `ResourceNotFoundException` for a secret.
pub(crate) fn not_found() -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret.",
    )
}

/// `ResourceNotFoundException` for a staging label without a version.
pub(crate) fn no_stage(stage: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("Secrets Manager can't find the specified secret value for staging label: {stage}"),
    )
}

/// `ResourceNotFoundException` for a version id.
pub(crate) fn no_version(version_id: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!(
            "Secrets Manager can't find the specified secret value for VersionId: {version_id}"
        ),
    )
}

/// `InvalidRequestException` for a secret pending deletion.
pub(crate) fn marked_for_deletion() -> AwsError {
    invalid_request(
        "You can't perform this operation on the secret because it was marked for deletion.",
    )
}

/// `InvalidRequestException`.
pub(crate) fn invalid_request(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidRequestException", message)
}

/// `InvalidParameterException`.
pub(crate) fn invalid_parameter(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterException", message)
}

/// `ResourceExistsException` for a secret name in use.
pub(crate) fn exists(name: &str) -> AwsError {
    AwsError::client(
        "ResourceExistsException",
        format!("The operation failed because the secret {name} already exists."),
    )
}

/// `ResourceExistsException` for a version id reused with another value.
pub(crate) fn version_exists() -> AwsError {
    AwsError::client(
        "ResourceExistsException",
        "You can't modify an existing version, you can only create a new version.",
    )
}

/// `InvalidNextTokenException`.
pub(crate) fn bad_token() -> AwsError {
    AwsError::client(
        "InvalidNextTokenException",
        "The NextToken value is invalid.",
    )
}

/// The store failed: a server fault naming no data.
pub(crate) fn store(e: ferry_store::StoreError) -> AwsError {
    AwsError::server(
        "InternalServiceError",
        format!("Secrets Manager's store failed: {e}"),
    )
}

/// A failure to seal a new version, in Secrets Manager's terms.
pub(crate) fn encryption(e: SealError) -> AwsError {
    kms_error(e, "EncryptionFailure", "encrypt")
}

/// A failure to open a version, in Secrets Manager's terms.
pub(crate) fn decryption(e: SealError) -> AwsError {
    kms_error(e, "DecryptionFailure", "decrypt")
}

fn kms_error(e: SealError, code: &str, verb: &str) -> AwsError {
    match e {
        // As AWS: the caller may not use the key (the KMS's audit record
        // says which permission was missing).
        SealError::Kms { error, .. } if error.code == "AccessDeniedException" => {
            AwsError::client("AccessDeniedException", "Access to KMS is not allowed")
        }
        SealError::Kms { error, .. } if error.code == "NotFoundException" => AwsError::client(
            "ResourceNotFoundException",
            format!(
                "Secrets Manager can't find the specified KMS key: {}",
                error.message
            ),
        ),
        SealError::Kms { operation, error } => AwsError::client(
            code,
            format!(
                "Secrets Manager can't {verb} the protected secret text using the provided KMS key \
                 (KMS {operation}: {}: {}).",
                error.code, error.message
            ),
        ),
        SealError::Malformed | SealError::Crypto => AwsError::client(
            code,
            format!(
                "Secrets Manager can't {verb} the protected secret text using the provided KMS key."
            ),
        ),
    }
}
