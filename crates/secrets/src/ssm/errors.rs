//! Parameter Store's errors, by AWS error code, with AWS's messages.

use ferry_proto::AwsError;

use crate::seal::SealError;

/// `ParameterNotFound`.
pub(crate) fn not_found(name: &str) -> AwsError {
    AwsError::client("ParameterNotFound", format!("Parameter {name} not found."))
}

/// `ParameterVersionNotFound`.
pub(crate) fn version_not_found(name: &str, selector: &str) -> AwsError {
    AwsError::client(
        "ParameterVersionNotFound",
        format!(
            "Systems Manager could not find version {selector} of {name}. Verify the version and try again."
        ),
    )
}

/// `ParameterAlreadyExists`.
pub(crate) fn already_exists() -> AwsError {
    AwsError::client(
        "ParameterAlreadyExists",
        "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
    )
}

/// The name rules, as AWS states them.
pub(crate) fn bad_name() -> AwsError {
    AwsError::validation(
        "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). If formed \
         as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be \
         formed as a mix of letters, numbers and the following 3 symbols .-_",
    )
}

/// `InvalidNextToken`.
pub(crate) fn bad_token() -> AwsError {
    AwsError::client("InvalidNextToken", "The specified token isn't valid.")
}

/// `InvalidFilterKey`.
pub(crate) fn filter_key(key: &str, valid: &str) -> AwsError {
    AwsError::client(
        "InvalidFilterKey",
        format!(
            "The following filter key is not valid: {key}. Valid filter keys include: [{valid}]."
        ),
    )
}

/// `InvalidFilterOption`.
pub(crate) fn filter_option(key: &str, option: &str, valid: &str) -> AwsError {
    AwsError::client(
        "InvalidFilterOption",
        format!(
            "The following filter option is not valid: {option}. Valid options for {key} include: [{valid}]."
        ),
    )
}

/// `InvalidFilterValue`.
pub(crate) fn filter_value(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidFilterValue", message)
}

/// The store failed: a server fault naming no data.
pub(crate) fn store(e: ferry_store::StoreError) -> AwsError {
    AwsError::server(
        "InternalServerError",
        format!("Parameter Store's store failed: {e}"),
    )
}

/// A KMS failure sealing or opening a SecureString, in SSM's terms.
pub(crate) fn kms(e: SealError) -> AwsError {
    match e {
        SealError::Kms { operation, error } => {
            let detail = format!(
                "{} (Service: AWSKMS; Operation: {operation}; Error Code: {})",
                error.message, error.code
            );
            match error.code.as_str() {
                "AccessDeniedException" => AwsError::client("AccessDeniedException", detail),
                "NotFoundException"
                | "InvalidArnException"
                | "DisabledException"
                | "KMSInvalidStateException"
                | "InvalidKeyUsageException" => AwsError::client("InvalidKeyId", detail),
                _ => AwsError::server("InternalServerError", detail),
            }
        }
        SealError::Malformed | SealError::Crypto => AwsError::server(
            "InternalServerError",
            "The SecureString value could not be decrypted.",
        ),
    }
}
