//! IAM and STS errors with the models' codes and HTTP statuses (query
//! protocol: the code is the model's `error.code`, e.g. `NoSuchEntity`).

use ferry_proto::AwsError;

/// `NoSuchEntity` (404).
pub fn no_such_entity(message: impl Into<String>) -> AwsError {
    AwsError::client("NoSuchEntity", message).with_status(404)
}

/// `EntityAlreadyExists` (409).
pub fn already_exists(message: impl Into<String>) -> AwsError {
    AwsError::client("EntityAlreadyExists", message).with_status(409)
}

/// `DeleteConflict` (409).
pub fn delete_conflict(message: impl Into<String>) -> AwsError {
    AwsError::client("DeleteConflict", message).with_status(409)
}

/// `LimitExceeded` (409).
pub fn limit_exceeded(message: impl Into<String>) -> AwsError {
    AwsError::client("LimitExceeded", message).with_status(409)
}

/// `MalformedPolicyDocument` (400).
pub fn malformed_policy(message: impl Into<String>) -> AwsError {
    AwsError::client("MalformedPolicyDocument", message)
}

/// `InvalidInput` (400).
pub fn invalid_input(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidInput", message)
}

/// `ValidationError` (400), the query protocol's constraint violation.
pub fn validation(message: impl Into<String>) -> AwsError {
    ferry_proto::query::validation_error(message)
}

/// `AccessDenied` (403).
pub fn access_denied(message: impl Into<String>) -> AwsError {
    AwsError::client("AccessDenied", message).with_status(403)
}

/// `ServiceFailure` (500): a fault of ferry itself (the store, sealing).
pub fn service_failure(message: impl Into<String>) -> AwsError {
    AwsError::server("ServiceFailure", message)
}

/// A store failure as the caller sees it: a server fault that names the
/// table and key at most.
pub fn store(e: ferry_store::StoreError) -> AwsError {
    service_failure(e.to_string())
}

/// The role is missing.
pub fn no_such_role(name: &str) -> AwsError {
    no_such_entity(format!("The role with name {name} cannot be found."))
}

/// The user is missing.
pub fn no_such_user(name: &str) -> AwsError {
    no_such_entity(format!("The user with name {name} cannot be found."))
}
