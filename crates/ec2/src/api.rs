//! The EC2 query service (`Version=2016-11-15`, signing name `ec2`). The
//! listener's gate authorizes `ec2:ACTION` before a call arrives here.

use std::sync::Arc;

use ferry_proto::query::{Flavor, Params, QueryService, Xml};
use ferry_proto::{AwsError, RequestContext};

use crate::Ec2;
use crate::error::ApiError;
use crate::ops;

/// The EC2 API's XML namespace.
pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
/// The EC2 API version.
pub const VERSION: &str = "2016-11-15";

/// The EC2 query service over [`Ec2`].
pub struct Ec2Service {
    ec2: Arc<Ec2>,
}

impl Ec2Service {
    /// The service over `ec2`.
    pub fn new(ec2: Arc<Ec2>) -> Self {
        Self { ec2 }
    }
}

type Handler = fn(&Ec2, &Params) -> Result<Xml, AwsError>;

fn handler(action: &str) -> Option<Handler> {
    Some(match action {
        "CreateVpc" => ops::vpcs::create,
        "DescribeVpcs" => ops::vpcs::describe,
        "DeleteVpc" => ops::vpcs::delete,
        "CreateSubnet" => ops::subnets::create,
        "DescribeSubnets" => ops::subnets::describe,
        "DeleteSubnet" => ops::subnets::delete,
        "CreateSecurityGroup" => ops::groups::create,
        "DescribeSecurityGroups" => ops::groups::describe,
        "DeleteSecurityGroup" => ops::groups::delete,
        "AuthorizeSecurityGroupIngress" => |e, p| ops::groups::authorize(e, p, false),
        "AuthorizeSecurityGroupEgress" => |e, p| ops::groups::authorize(e, p, true),
        "RevokeSecurityGroupIngress" => |e, p| ops::groups::revoke(e, p, false),
        "RevokeSecurityGroupEgress" => |e, p| ops::groups::revoke(e, p, true),
        "DescribeSecurityGroupRules" => ops::groups::describe_rules,
        "DescribeNetworkInterfaces" => ops::enis::describe,
        "CreateTags" => ops::tags::create,
        "DeleteTags" => ops::tags::delete,
        "DescribeTags" => ops::tags::describe,
        "DescribeAvailabilityZones" => ops::zones::describe,
        _ => return None,
    })
}

impl QueryService for Ec2Service {
    fn xml_namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn api_version(&self) -> &'static str {
        VERSION
    }

    fn flavor(&self) -> Flavor {
        Flavor::Ec2
    }

    fn authorizes_itself(&self) -> bool {
        false
    }

    fn call(&self, _ctx: &RequestContext, action: &str, params: &Params) -> Result<Xml, AwsError> {
        let h = handler(action).ok_or_else(|| ApiError::InvalidAction(action.to_owned()))?;
        // Replicas: what another process changed is loaded first.
        self.ec2.refresh()?;
        h(&self.ec2, params)
    }
}
