//! The control plane's side of the VPC boundary: every task gets an
//! elastic network interface (ENI) in one of the subnets its
//! `awsvpcConfiguration` names, in its security groups. The VPC service
//! (`ferry-ec2`, connected by the server's composition root) checks the
//! names, allocates the address and MAC, and frees them again; the control
//! plane decides when: at launch, when the task is STOPPED, and after a
//! restart for ENIs no unfinished task holds.

use ferry_proto::net::{InterfacePlan, Ipv4Cidr};

use crate::error::EcsError;
use crate::wire::NetworkConfiguration;

/// A task's `awsvpcConfiguration`, parsed: at least one subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsVpc {
    /// `subnets`, as given (one is chosen per task).
    pub subnets: Vec<String>,
    /// `securityGroups`; empty means the VPC's default group.
    pub security_groups: Vec<String>,
}

impl AwsVpc {
    /// Parses a network configuration: the awsvpc configuration must be
    /// there with at least one subnet (ECS's wording when it is not).
    pub fn parse(net: Option<&NetworkConfiguration>) -> Result<Self, EcsError> {
        let a = net
            .and_then(|n| n.awsvpc_configuration.as_ref())
            .ok_or_else(|| {
                EcsError::InvalidParameter(
                    "Network Configuration must be provided when networkMode 'awsvpc' is specified."
                        .into(),
                )
            })?;
        if a.subnets.is_empty() {
            return Err(EcsError::InvalidParameter(
                "subnets can not be empty.".into(),
            ));
        }
        if a.subnets.len() > 16 || a.security_groups.as_ref().is_some_and(|g| g.len() > 5) {
            return Err(EcsError::InvalidParameter(
                "awsvpcConfiguration takes at most 16 subnets and 5 security groups.".into(),
            ));
        }
        Ok(Self {
            subnets: a.subnets.clone(),
            security_groups: a.security_groups.clone().unwrap_or_default(),
        })
    }
}

/// Why no ENI could be made for a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRefusal {
    /// A subnet or group does not exist, or they are not in one VPC: the
    /// request is wrong (the message is the one ECS relays from EC2).
    #[error("{0}")]
    Invalid(String),
    /// Every named subnet is full: this task cannot start now.
    #[error("{0}")]
    NoAddress(String),
    /// The VPC service failed.
    #[error("{0}")]
    Failed(String),
}

/// The VPC service, as the control plane uses it.
pub trait TaskNetworks: Send + Sync {
    /// Checks that the subnets and groups exist, in one VPC (RunTask,
    /// CreateService, UpdateService), without allocating anything.
    fn check(&self, net: &AwsVpc) -> Result<(), NetworkRefusal>;

    /// The CIDR block of each of `subnets` that exists (placement matches
    /// them against hosts' `--subnet`).
    fn subnet_cidrs(&self, subnets: &[String]) -> Result<Vec<(String, Ipv4Cidr)>, NetworkRefusal>;

    /// Allocates one task's ENI; `description` names the task's
    /// attachment, as ECS's ENIs do.
    fn attach(&self, net: &AwsVpc, description: &str) -> Result<InterfacePlan, NetworkRefusal>;

    /// Frees an ENI (and its address). Idempotent.
    fn detach(&self, eni_id: &str);

    /// After a restart: frees every ENI `keep` does not accept.
    fn release_unless(&self, keep: &dyn Fn(&str) -> bool);
}

#[cfg(test)]
mod tests {
    use ferry_proto::plan::TaskEvent;
    use serde_json::json;

    use super::TaskNetworks;

    use crate::tests::{env, run_body, source_doc};

    fn run_with(_e: &crate::tests::Env, subnets: &[&str], groups: &[&str]) -> serde_json::Value {
        let mut b = run_body();
        b["networkConfiguration"] =
            json!({"awsvpcConfiguration": {"subnets": subnets, "securityGroups": groups}});
        b
    }

    #[test]
    fn each_task_gets_an_eni_that_is_freed_when_it_stops() {
        let e = env();
        e.ok("RegisterTaskDefinition", source_doc());
        let r = e.ok("RunTask", {
            let mut b = run_with(&e, &["subnet-a", "subnet-b"], &["sg-1"]);
            b["count"] = json!(2);
            b
        });
        assert_eq!(r["tasks"].as_array().unwrap().len(), 2);
        let plan = e.plan(0);
        let eni = plan.network.clone().expect("the plan carries the ENI");
        assert_eq!(eni.security_groups, ["sg-1"]);
        let arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_owned();
        e.sink(0)(TaskEvent::Provisioned {
            private_ip: eni.ip.to_string(),
        });
        let details = e.describe(&arn)["attachments"][0]["details"].clone();
        let names: Vec<_> = details
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "subnetId",
                "networkInterfaceId",
                "macAddress",
                "privateDnsName",
                "privateIPv4Address"
            ]
        );
        assert_eq!(details[1]["value"], eni.eni_id.as_str());
        // The task is in its subnet's zone.
        assert_eq!(e.describe(&arn)["availabilityZone"], "us-east-1b");
        assert_eq!(details[2]["value"], eni.mac.as_str());
        assert_eq!(
            details[3]["value"],
            format!("ip-{}.ec2.internal", eni.ip.to_string().replace('.', "-"))
        );
        assert!(e.nets.detached.lock().unwrap().is_empty());
        e.sink(0)(TaskEvent::Stopped {
            stop_code: "UserInitiated".into(),
            stopped_reason: "done".into(),
        });
        assert_eq!(*e.nets.detached.lock().unwrap(), [eni.eni_id]);
    }

    #[test]
    fn a_missing_subnet_or_group_fails_run_task_and_create_service() {
        let e = env();
        e.ok("RegisterTaskDefinition", source_doc());
        let err = e.err("RunTask", run_with(&e, &["subnet-missing"], &["sg-1"]));
        assert_eq!(err.code, "ClientException");
        assert!(err.message.contains("subnet-missing"), "{}", err.message);
        let err = e.err("RunTask", run_with(&e, &["subnet-1"], &["sg-missing"]));
        assert_eq!(err.code, "ClientException");
        assert!(e.nets.attached.lock().unwrap().is_empty());
        let err = e.err(
            "CreateService",
            json!({"serviceName": "s", "taskDefinition": "fargate-task-definition",
                   "desiredCount": 1, "launchType": "FARGATE",
                   "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-missing"]}}}),
        );
        assert_eq!(err.code, "InvalidParameterException");
    }

    #[test]
    fn a_full_subnet_is_a_failure_not_an_error() {
        let e = env();
        e.ok("RegisterTaskDefinition", source_doc());
        let r = e.ok("RunTask", run_with(&e, &["subnet-full"], &[]));
        assert!(r["tasks"].as_array().unwrap().is_empty());
        assert_eq!(r["failures"][0]["reason"], "RESOURCE:ENI");
    }

    #[test]
    fn a_restart_frees_the_enis_no_unfinished_task_holds() {
        let e = env();
        e.ok("RegisterTaskDefinition", source_doc());
        e.run_one();
        // The ENI of a task that never got recorded (a crash between
        // allocation and the store's commit).
        let stray = e
            .nets
            .attach(
                &super::AwsVpc {
                    subnets: vec!["subnet-1".into()],
                    security_groups: vec![],
                },
                "stray",
            )
            .unwrap()
            .eni_id;
        let kept = e.plan(0).network.unwrap().eni_id;
        super::super::tasks::reconcile(e.svc.core()).unwrap();
        let detached = e.nets.detached.lock().unwrap().clone();
        assert!(detached.contains(&stray), "{detached:?}");
        // The fake runtime does not adopt: the task is STOPPED, its ENI freed.
        assert!(detached.contains(&kept), "{detached:?}");
    }
}
