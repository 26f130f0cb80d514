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
    /// `MountTargetNotFound` (404).
    #[error("Mount target '{0}' does not exist.")]
    MountTargetNotFound(String),
    /// `MountTargetConflict` (409): zone or VPC rules.
    #[error("{0}")]
    MountTargetConflict(String),
    /// `SubnetNotFound` (400).
    #[error("{0}")]
    SubnetNotFound(String),
    /// `SecurityGroupNotFound` (400).
    #[error("{0}")]
    SecurityGroupNotFound(String),
    /// `SecurityGroupLimitExceeded` (400).
    #[error("{0}")]
    SecurityGroupLimitExceeded(String),
    /// `IpAddressInUse` (409).
    #[error("{0}")]
    IpAddressInUse(String),
    /// `NoFreeAddressesInSubnet` (409).
    #[error("{0}")]
    NoFreeAddressesInSubnet(String),
    /// `AvailabilityZonesMismatch` (400): One Zone file system, other zone.
    #[error("{0}")]
    AvailabilityZonesMismatch(String),
    /// `PolicyNotFound` (404).
    #[error("{0}")]
    PolicyNotFound(String),
    /// `InvalidPolicyException` (400).
    #[error("{0}")]
    InvalidPolicy(String),
    /// `ValidationException` (400).
    #[error("{0}")]
    Validation(String),
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
            Self::MountTargetNotFound(_) => "MountTargetNotFound",
            Self::MountTargetConflict(_) => "MountTargetConflict",
            Self::SubnetNotFound(_) => "SubnetNotFound",
            Self::SecurityGroupNotFound(_) => "SecurityGroupNotFound",
            Self::SecurityGroupLimitExceeded(_) => "SecurityGroupLimitExceeded",
            Self::IpAddressInUse(_) => "IpAddressInUse",
            Self::NoFreeAddressesInSubnet(_) => "NoFreeAddressesInSubnet",
            Self::AvailabilityZonesMismatch(_) => "AvailabilityZonesMismatch",
            Self::PolicyNotFound(_) => "PolicyNotFound",
            Self::InvalidPolicy(_) => "InvalidPolicyException",
            Self::Validation(_) => "ValidationException",
        }
    }

    fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_)
            | Self::SubnetNotFound(_)
            | Self::SecurityGroupNotFound(_)
            | Self::SecurityGroupLimitExceeded(_)
            | Self::AvailabilityZonesMismatch(_)
            | Self::InvalidPolicy(_)
            | Self::Validation(_) => 400,
            Self::FileSystemNotFound(_)
            | Self::AccessPointNotFound(_)
            | Self::MountTargetNotFound(_)
            | Self::PolicyNotFound(_) => 404,
            Self::FileSystemAlreadyExists(..)
            | Self::AccessPointAlreadyExists(..)
            | Self::FileSystemInUse(_)
            | Self::IncorrectFileSystemLifeCycleState(_)
            | Self::MountTargetConflict(_)
            | Self::IpAddressInUse(_)
            | Self::NoFreeAddressesInSubnet(_) => 409,
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
