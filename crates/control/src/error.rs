//! Errors of the ECS API, one variant per error shape of botocore's `ecs`
//! model that ferry emits. Each carries the message the caller sees.

use ferry_proto::AwsError;
use ferry_store::StoreError;

/// An ECS API error.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    /// `ClientException`: the request cannot be served as given.
    #[error("{0}")]
    Client(String),
    /// `InvalidParameterException`: a parameter is invalid.
    #[error("{0}")]
    InvalidParameter(String),
    /// `ClusterNotFoundException`.
    #[error("{0}")]
    ClusterNotFound(String),
    /// `ClusterContainsTasksException`.
    #[error("{0}")]
    ClusterContainsTasks(String),
    /// `ResourceNotFoundException` (tagging an unknown resource).
    #[error("{0}")]
    ResourceNotFound(String),
    /// `ClusterContainsServicesException`.
    #[error("{0}")]
    ClusterContainsServices(String),
    /// `ServiceNotFoundException`.
    #[error("{0}")]
    ServiceNotFound(String),
    /// `ServiceNotActiveException`.
    #[error("{0}")]
    ServiceNotActive(String),
    /// `ResourceInUseException`: a capacity provider still in use.
    #[error("{0}")]
    ResourceInUse(String),
    /// `PlatformUnknownException`: unknown Fargate platform version.
    #[error("{0}")]
    PlatformUnknown(String),
    /// `SerializationException`: the body is not the operation's JSON shape.
    #[error("{0}")]
    Serialization(String),
    /// `UnknownOperationException`.
    #[error("operation {0} is not supported")]
    UnknownOperation(String),
    /// `ServerException`: a fault of ferry itself.
    #[error("{0}")]
    Server(String),
    /// This process lost the scheduler lease while acting on it: the work
    /// was not recorded (a `ServerException`; never reaches a caller of
    /// the API, only the singletons act under the lease).
    #[error("{0}")]
    NotLeader(String),
    /// The state store failed (a `ServerException`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EcsError {
    /// `ClusterNotFoundException` with ECS's message.
    pub fn cluster_not_found() -> Self {
        Self::ClusterNotFound("Cluster not found.".into())
    }

    /// The AWS error code (`__type`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Client(_) => "ClientException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::ClusterNotFound(_) => "ClusterNotFoundException",
            Self::ClusterContainsTasks(_) => "ClusterContainsTasksException",
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::PlatformUnknown(_) => "PlatformUnknownException",
            Self::ResourceInUse(_) => "ResourceInUseException",
            Self::ServiceNotFound(_) => "ServiceNotFoundException",
            Self::ClusterContainsServices(_) => "ClusterContainsServicesException",
            Self::ServiceNotActive(_) => "ServiceNotActiveException",
            Self::Serialization(_) => "SerializationException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::Server(_) | Self::Store(_) | Self::NotLeader(_) => "ServerException",
        }
    }
}

impl From<EcsError> for AwsError {
    fn from(e: EcsError) -> Self {
        let code = e.code();
        match e {
            EcsError::Server(_) | EcsError::Store(_) | EcsError::NotLeader(_) => {
                tracing::error!(error = %e, "ECS server fault");
                AwsError::server(code, e.to_string())
            }
            other => AwsError::client(code, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_aws_shape() {
        let e: AwsError = EcsError::cluster_not_found().into();
        assert_eq!(e.code, "ClusterNotFoundException");
        assert_eq!(e.message, "Cluster not found.");
        assert_eq!(e.status, 400);
        let e: AwsError = EcsError::Server("boom".into()).into();
        assert_eq!(e.status, 500);
        assert_eq!(e.code, "ServerException");
    }
}
