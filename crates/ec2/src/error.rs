//! Errors: [`Ec2Error`] for the in-process API, [`ApiError`] for the EC2
//! API (each variant one EC2 error code, worded as EC2 words it), and
//! [`AttachError`] with the messages ECS gives for a task's network.

use ferry_proto::AwsError;
use ferry_store::StoreError;

/// A failure of the in-process API.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The default VPC cannot be made from the configured block.
    #[error("the default VPC: {0}")]
    DefaultVpc(String),
    /// The thread that follows other replicas' changes did not start.
    #[error("starting the VPC state's poll thread: {0}")]
    Poll(String),
}

impl From<Ec2Error> for AwsError {
    fn from(e: Ec2Error) -> Self {
        match e {
            Ec2Error::Store(s) => s.into(),
            Ec2Error::DefaultVpc(m) | Ec2Error::Poll(m) => AwsError::server("InternalError", m),
        }
    }
}

/// An EC2 API error. The `Display` is EC2's message; [`ApiError::code`]
/// its code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `InvalidVpcID.NotFound`.
    #[error("The vpc ID '{0}' does not exist")]
    VpcNotFound(String),
    /// `InvalidSubnetID.NotFound`.
    #[error("The subnet ID '{0}' does not exist")]
    SubnetNotFound(String),
    /// `InvalidGroup.NotFound` by id.
    #[error("The security group '{0}' does not exist")]
    GroupNotFound(String),
    /// `InvalidGroup.NotFound` by name.
    #[error("The security group '{name}' does not exist in VPC '{vpc}'")]
    GroupNameNotFound {
        /// The name.
        name: String,
        /// The VPC looked in.
        vpc: String,
    },
    /// `InvalidGroup.Duplicate`.
    #[error("The security group '{name}' already exists for VPC '{vpc}'")]
    GroupDuplicate {
        /// The name.
        name: String,
        /// The VPC.
        vpc: String,
    },
    /// `InvalidPermission.Duplicate`.
    #[error("the specified rule \"{0}\" already exists")]
    PermissionDuplicate(String),
    /// `InvalidPermission.NotFound`.
    #[error("The specified rule does not exist in this security group.")]
    PermissionNotFound,
    /// `InvalidSecurityGroupRuleId.NotFound`.
    #[error("The security group rule ID '{0}' does not exist")]
    RuleNotFound(String),
    /// `InvalidNetworkInterfaceID.NotFound`.
    #[error("The networkInterface ID '{0}' does not exist")]
    EniNotFound(String),
    /// `InvalidID`: a resource id of no kind this service has.
    #[error("The ID '{0}' is not valid")]
    InvalidId(String),
    /// `DependencyViolation`.
    #[error("{0}")]
    DependencyViolation(String),
    /// `CannotDelete`: the default group.
    #[error("the specified group: \"{0}\" name: \"default\" cannot be deleted by a user")]
    CannotDelete(String),
    /// `OperationNotPermitted`.
    #[error("{0}")]
    NotPermitted(String),
    /// `InvalidParameterValue`.
    #[error("{0}")]
    InvalidParameterValue(String),
    /// `InvalidParameterCombination`.
    #[error("{0}")]
    InvalidParameterCombination(String),
    /// `InvalidParameter`.
    #[error("{0}")]
    InvalidParameter(String),
    /// `MissingParameter`.
    #[error("The request must contain the parameter {0}")]
    MissingParameter(String),
    /// `InvalidSubnet.Range`.
    #[error("The CIDR '{0}' is invalid.")]
    SubnetRange(String),
    /// `InvalidSubnet.Conflict`.
    #[error("{0}")]
    SubnetConflict(String),
    /// `InvalidVpc.Range`.
    #[error("The CIDR '{0}' is invalid.")]
    VpcRange(String),
    /// `InvalidNextToken`.
    #[error("The token '{0}' is invalid.")]
    NextToken(String),
    /// `TagLimitExceeded`.
    #[error("The maximum number of tags (50) for resource '{0}' has been reached.")]
    TagLimit(String),
    /// `DryRunOperation` (HTTP 412): the request would have succeeded.
    #[error("Request would have succeeded, but DryRun flag is set.")]
    DryRun,
    /// `InvalidAction`.
    #[error("The action {0} is not valid for this web service.")]
    InvalidAction(String),
}

impl ApiError {
    /// The EC2 error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::VpcNotFound(_) => "InvalidVpcID.NotFound",
            ApiError::SubnetNotFound(_) => "InvalidSubnetID.NotFound",
            ApiError::GroupNotFound(_) | ApiError::GroupNameNotFound { .. } => {
                "InvalidGroup.NotFound"
            }
            ApiError::GroupDuplicate { .. } => "InvalidGroup.Duplicate",
            ApiError::PermissionDuplicate(_) => "InvalidPermission.Duplicate",
            ApiError::PermissionNotFound => "InvalidPermission.NotFound",
            ApiError::RuleNotFound(_) => "InvalidSecurityGroupRuleId.NotFound",
            ApiError::EniNotFound(_) => "InvalidNetworkInterfaceID.NotFound",
            ApiError::InvalidId(_) => "InvalidID",
            ApiError::DependencyViolation(_) => "DependencyViolation",
            ApiError::CannotDelete(_) => "CannotDelete",
            ApiError::NotPermitted(_) => "OperationNotPermitted",
            ApiError::InvalidParameterValue(_) => "InvalidParameterValue",
            ApiError::InvalidParameterCombination(_) => "InvalidParameterCombination",
            ApiError::InvalidParameter(_) => "InvalidParameter",
            ApiError::MissingParameter(_) => "MissingParameter",
            ApiError::SubnetRange(_) => "InvalidSubnet.Range",
            ApiError::SubnetConflict(_) => "InvalidSubnet.Conflict",
            ApiError::VpcRange(_) => "InvalidVpc.Range",
            ApiError::NextToken(_) => "InvalidNextToken",
            ApiError::TagLimit(_) => "TagLimitExceeded",
            ApiError::DryRun => "DryRunOperation",
            ApiError::InvalidAction(_) => "InvalidAction",
        }
    }
}

impl From<ApiError> for AwsError {
    fn from(e: ApiError) -> Self {
        let status = if matches!(e, ApiError::DryRun) {
            412
        } else {
            400
        };
        AwsError::client(e.code(), e.to_string()).with_status(status)
    }
}

/// Why [`crate::Ec2::attach`] refused a task's network configuration. The
/// `Display` is the message ECS gives (RunTask's `ClientException`).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No subnet was named.
    #[error("subnets can not be empty.")]
    NoSubnets,
    /// These subnets do not exist.
    #[error(
        "Error retrieving subnet information for [{}]: {} (Service: AmazonEC2; Status Code: 400; Error Code: InvalidSubnetID.NotFound)",
        .0.join(", "), not_exist("subnet ID", "subnet IDs", .0)
    )]
    SubnetNotFound(Vec<String>),
    /// These security groups do not exist.
    #[error(
        "Error retrieving security group information for [{}]: {} (Service: AmazonEC2; Status Code: 400; Error Code: InvalidGroup.NotFound)",
        .0.join(", "), not_exist("security group", "security groups", .0)
    )]
    GroupNotFound(Vec<String>),
    /// The subnets and groups are not all of one VPC.
    #[error("Security groups and subnets must all belong to the same VPC.")]
    NotOneVpc,
    /// The subnets have no free address left (names the last tried).
    #[error(
        "There are not enough free addresses in subnet '{0}' to satisfy the requested number of network interfaces."
    )]
    NoFreeAddress(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn not_exist(one: &str, many: &str, ids: &[String]) -> String {
    match ids {
        [id] => format!("The {one} '{id}' does not exist"),
        _ => format!("The {many} '{}' do not exist", ids.join(", ")),
    }
}

/// Why [`crate::Ec2::attach_service`] or [`crate::Ec2::set_groups`]
/// refused (the calling service maps these to its own error codes).
#[derive(Debug, thiserror::Error)]
pub enum ServiceEniError {
    /// The subnet does not exist.
    #[error("The subnet ID '{0}' does not exist")]
    SubnetNotFound(String),
    /// These security groups do not exist.
    #[error("{}", not_exist("security group", "security groups", .0))]
    GroupNotFound(Vec<String>),
    /// A group is of another VPC than the subnet.
    #[error("Security group '{0}' does not belong to VPC '{1}'.")]
    GroupOfOtherVpc(String, String),
    /// More groups than an interface may have.
    #[error("Too many security groups: at most {0} may be given.")]
    TooManyGroups(usize),
    /// The address asked for is not a usable address of the subnet.
    #[error("IP address {0} is not a usable address of subnet {1} ({2}).")]
    AddressNotInSubnet(std::net::Ipv4Addr, String, String),
    /// The address asked for is taken.
    #[error("IP address {0} is already in use in subnet {1}.")]
    AddressInUse(std::net::Ipv4Addr, String),
    /// The subnet is full.
    #[error("Subnet {0} has no free IP address.")]
    NoFreeAddress(String),
    /// No such interface.
    #[error("The network interface '{0}' does not exist")]
    EniNotFound(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
