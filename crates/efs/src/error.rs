//! EFS errors: code, message and the HTTP status the botocore model gives.

use ferry_proto::AwsError;
use ferry_store::StoreError;

/// An EFS operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum EfsError {
    /// `BadRequest` (400): invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// `FileSystemNotFound` (404).
    #[error("File system '{0}' does not exist.")]
    FileSystemNotFound(String),
    /// `AccessPointNotFound` (404).
    #[error("Access point '{0}' does not exist.")]
    AccessPointNotFound(String),
    /// `FileSystemAlreadyExists` (409): same creation token.
    #[error("File system '{0}' already exists with creation token '{1}'.")]
    FileSystemAlreadyExists(String, String),
    /// `AccessPointAlreadyExists` (409): same client token.
    #[error("Access point '{0}' already exists with client token '{1}'.")]
    AccessPointAlreadyExists(String, String),
    /// `FileSystemInUse` (409): a task uses it, or it has access points.
    #[error("{0}")]
    FileSystemInUse(String),
    /// `IncorrectFileSystemLifeCycleState` (409).
    #[error("File system '{0}' is not available.")]
    IncorrectFileSystemLifeCycleState(String),
    /// `InternalServerError` (500).
    #[error("{0}")]
    Internal(String),
}

impl EfsError {
    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequest",
            Self::FileSystemNotFound(_) => "FileSystemNotFound",
            Self::AccessPointNotFound(_) => "AccessPointNotFound",
            Self::FileSystemAlreadyExists(..) => "FileSystemAlreadyExists",
            Self::AccessPointAlreadyExists(..) => "AccessPointAlreadyExists",
            Self::FileSystemInUse(_) => "FileSystemInUse",
            Self::IncorrectFileSystemLifeCycleState(_) => "IncorrectFileSystemLifeCycleState",
            Self::Internal(_) => "InternalServerError",
        }
    }

    fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::FileSystemNotFound(_) | Self::AccessPointNotFound(_) => 404,
            Self::FileSystemAlreadyExists(..)
            | Self::AccessPointAlreadyExists(..)
            | Self::FileSystemInUse(_)
            | Self::IncorrectFileSystemLifeCycleState(_) => 409,
            Self::Internal(_) => 500,
        }
    }
}

impl From<StoreError> for EfsError {
    fn from(e: StoreError) -> Self {
        Self::Internal(format!("state store: {e}"))
    }
}

impl From<EfsError> for AwsError {
    fn from(e: EfsError) -> Self {
        // The api layer adds `x-amzn-ErrorType`; botocore reads the code from
        // it and the message from the body's `message`.
        AwsError {
            code: e.code().to_owned(),
            message: e.to_string(),
            status: e.status(),
        }
    }
}
