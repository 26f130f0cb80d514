//! CreateService, UpdateService, DescribeServices, ListServices,
//! DeleteService. The handlers record what the user asked for; the
//! [`crate::scheduler`] makes it so (launches, replaces and stops tasks).

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capacity::StrategyItem;
use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::model::cluster::ClusterRecord;
use crate::model::service::{self, Deployment, ServiceRecord};
use crate::networks::{AwsVpc, NetworkRefusal};
use crate::paging;
use crate::service::Core;
use crate::tasks;
use crate::validate;
use crate::wire::service::{self as wire_service, Service};
use crate::wire::{Failure, NetworkConfiguration, Tag};

/// `DeploymentConfiguration` (the parts ferry honours).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    #[serde(default)]
    maximum_percent: Option<i64>,
    #[serde(default)]
    minimum_healthy_percent: Option<i64>,
    #[serde(default)]
    deployment_circuit_breaker: Option<CircuitBreaker>,
}

/// `DeploymentCircuitBreaker`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CircuitBreaker {
    #[serde(default)]
    enable: bool,
}

/// `CreateServiceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateServiceRequest {
    #[serde(default)]
    cluster: Option<String>,
    service_name: String,
    #[serde(default)]
    task_definition: Option<String>,
    #[serde(default)]
    desired_count: Option<i64>,
    #[serde(default)]
    launch_type: Option<String>,
    #[serde(default)]
    capacity_provider_strategy: Vec<StrategyItem>,
    #[serde(default)]
    platform_version: Option<String>,
    #[serde(default)]
    deployment_configuration: Option<DeploymentConfiguration>,
    #[serde(default)]
    network_configuration: Option<Value>,
    #[serde(default)]
    scheduling_strategy: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    propagate_tags: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// CreateService/UpdateService members accepted and not used (see
/// docs/services.md): the grace period matters only with load balancers,
/// the ECS deployment controller is the only one, a service role is for
/// load balancers, and Fargate tasks are spread over the subnets given.
const ACCEPTED: &[&str] = &[
    "clientToken",
    "healthCheckGracePeriodSeconds",
    "role",
    "availabilityZoneRebalancing",
    "propagateTags",
];

fn check_controller(rest: &serde_json::Map<String, Value>) -> Result<(), EcsError> {
    match rest.get("deploymentController").and_then(|d| d.get("type")) {
        None => Ok(()),
        Some(t) if t == "ECS" => Ok(()),
        Some(t) => Err(EcsError::InvalidParameter(format!(
            "deploymentController type {t} is not supported: ferry deploys with the ECS controller only."
        ))),
    }
}

/// `UpdateServiceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateServiceRequest {
    #[serde(default)]
    cluster: Option<String>,
    service: String,
    #[serde(default)]
    desired_count: Option<i64>,
    #[serde(default)]
    task_definition: Option<String>,
    #[serde(default)]
    platform_version: Option<String>,
    #[serde(default)]
    force_new_deployment: Option<bool>,
    #[serde(default)]
    capacity_provider_strategy: Option<Vec<StrategyItem>>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
    #[serde(default)]
    deployment_configuration: Option<DeploymentConfiguration>,
    #[serde(default)]
    network_configuration: Option<Value>,
}

/// `DeleteServiceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteServiceRequest {
    #[serde(default)]
    cluster: Option<String>,
    service: String,
    #[serde(default)]
    force: Option<bool>,
}

/// `DescribeServicesRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServicesRequest {
    #[serde(default)]
    cluster: Option<String>,
    services: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// `ListServicesRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    launch_type: Option<String>,
}

/// `{"service": Service}`.
#[derive(Debug, Serialize)]
pub struct ServiceResponse {
    service: Service,
}

/// `DescribeServicesResponse`.
#[derive(Debug, Serialize)]
pub struct DescribeServicesResponse {
    services: Vec<Service>,
    failures: Vec<Failure>,
}

/// `ListServicesResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesResponse {
    service_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// The name in a service name or ARN (`.../service/CLUSTER/NAME`).
fn service_name(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

fn check_desired(n: Option<i64>) -> Result<u32, EcsError> {
    match n.unwrap_or(0) {
        n @ 0..=1000 => Ok(n as u32),
        n => Err(EcsError::InvalidParameter(format!(
            "desiredCount {n} is invalid: it must be between 0 and 1000."
        ))),
    }
}

fn percents(
    cfg: Option<&DeploymentConfiguration>,
    current: (u32, u32, bool),
) -> Result<(u32, u32, bool), EcsError> {
    let Some(c) = cfg else { return Ok(current) };
    let max = c.maximum_percent.unwrap_or(i64::from(current.0));
    let min = c.minimum_healthy_percent.unwrap_or(i64::from(current.1));
    if !(100..=1000).contains(&max) {
        return Err(EcsError::InvalidParameter(format!(
            "maximumPercent {max} is invalid: it must be between 100 and 1000 for Fargate services."
        )));
    }
    if !(0..=100).contains(&min) {
        return Err(EcsError::InvalidParameter(format!(
            "minimumHealthyPercent {min} is invalid: it must be between 0 and 100."
        )));
    }
    if min == 100 && max == 100 {
        return Err(EcsError::InvalidParameter(
            "maximumPercent and minimumHealthyPercent cannot both be 100: a rolling update could never replace a task.".into(),
        ));
    }
    let cb = c
        .deployment_circuit_breaker
        .as_ref()
        .map_or(current.2, |b| b.enable);
    Ok((max as u32, min as u32, cb))
}

/// Parses and checks a service's `networkConfiguration` (awsvpc with at
/// least one subnet).
/// A service's network configuration: parsed, and its subnets and groups
/// checked with the VPC service (CreateService and UpdateService refuse
/// what RunTask would).
fn network(core: &Core, net: &Value) -> Result<NetworkConfiguration, EcsError> {
    let n: NetworkConfiguration = serde_json::from_value(net.clone())
        .map_err(|e| EcsError::InvalidParameter(format!("networkConfiguration: {e}")))?;
    let vpc = AwsVpc::parse(Some(&n))?;
    core.networks.check(&vpc).map_err(|e| match e {
        NetworkRefusal::Failed(m) => EcsError::Server(format!("the VPC service failed: {m}")),
        NetworkRefusal::Invalid(m) | NetworkRefusal::NoAddress(m) => EcsError::InvalidParameter(m),
    })?;
    Ok(n)
}

/// Checks that `td` can run at `platform` on this server (the same rules
/// as RunTask); returns the resolved task definition ARN.
fn check_definition(core: &Core, td: &str, platform: &str) -> Result<String, EcsError> {
    let rec = tasks::runnable_task_definition(core, td)?;
    let p = validate::platform(Some(platform))?;
    let (_, _, size) = crate::plan::effective_size(&rec.spec, &Default::default())?;
    tasks::check_platform(core, p, size)?;
    Ok(rec.arn)
}

fn new_deployment(
    cluster: &ClusterRecord,
    td: &str,
    desired: u32,
    platform: &str,
    now: f64,
) -> Deployment {
    let encrypted = platform != "1.3.0";
    Deployment {
        id: service::deployment_id(),
        status: "PRIMARY".into(),
        task_definition: td.into(),
        desired_count: desired,
        requested_platform: platform.into(),
        kms_key_id: if encrypted {
            cluster.storage_key_arn.clone()
        } else {
            None
        },
        rollout_state: "IN_PROGRESS".into(),
        rollout_state_reason: "ECS deployment in progress.".into(),
        failed_tasks: 0,
        created_at: now,
        updated_at: now,
    }
}

/// CreateService.
pub fn create(
    core: &Arc<Core>,
    ctx: &RequestContext,
    req: CreateServiceRequest,
) -> Result<ServiceResponse, EcsError> {
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    crate::model::cluster::check_name(&req.service_name)
        .map_err(|e| EcsError::InvalidParameter(e.replace("Cluster name", "Service name")))?;
    check_controller(&req.rest)?;
    let mut rest = req.rest.clone();
    rest.remove("deploymentController");
    validate::refuse_unsupported(&rest, ACCEPTED, "CreateService")?;
    let strategy = crate::capacity::resolve(
        req.launch_type.as_deref(),
        &req.capacity_provider_strategy,
        &cluster.capacity_providers,
        &cluster.default_capacity_provider_strategy,
    )?;
    if req
        .scheduling_strategy
        .as_deref()
        .is_some_and(|s| s != "REPLICA")
    {
        return Err(EcsError::InvalidParameter(
            "Fargate services support the REPLICA scheduling strategy only.".into(),
        ));
    }
    let td = req.task_definition.as_deref().ok_or_else(|| {
        EcsError::InvalidParameter(
            "taskDefinition is required for an ECS-controlled service.".into(),
        )
    })?;
    let desired = check_desired(req.desired_count)?;
    let (max, min, cb) = percents(req.deployment_configuration.as_ref(), (200, 100, false))?;
    let net = network(core, &req.network_configuration.unwrap_or(Value::Null))?;
    validate::check_tags(&req.tags)?;
    let platform = req.platform_version.unwrap_or_else(|| "LATEST".into());
    let _serialized = core.services_lock();
    let td_arn = check_definition(core, td, &platform)?;
    let now = clock::now();
    let key = db::service_key(&cluster.name, &req.service_name);
    let mut rec = ServiceRecord {
        name: req.service_name.clone(),
        arn: core.scope.service(&cluster.name, &req.service_name),
        cluster_name: cluster.name.clone(),
        cluster_arn: cluster.arn.clone(),
        status: "ACTIVE".into(),
        desired_count: desired,
        task_definition: td_arn.clone(),
        platform_version: platform.clone(),
        network_configuration: net,
        maximum_percent: max,
        minimum_healthy_percent: min,
        circuit_breaker: cb,
        deployments: vec![new_deployment(&cluster, &td_arn, desired, &platform, now)],
        events: vec![],
        tracked: vec![],
        consecutive_failures: 0,
        next_launch_at: 0.0,
        steady: false,
        tags: req.tags,
        propagate_tags: req.propagate_tags,
        created_at: now,
        created_by: ctx.caller.arn(),
        capacity_provider_strategy: strategy,
        version: 1,
    };
    rec.event(now, format!("(service {}) was created.", rec.name));
    core.store.write(|w| {
        if let Some(existing) = w.get::<ServiceRecord>(db::SERVICES, &key)?
            && existing.status != "INACTIVE"
        {
            return Err(EcsError::InvalidParameter(
                "Creation of service was not idempotent.".into(),
            ));
        }
        w.put(db::SERVICES, &key, &rec)?;
        Ok(())
    })?;
    respond_and_wake(core, &rec)
}

fn find(core: &Core, cluster: &str, service: &str) -> Result<(String, ServiceRecord), EcsError> {
    let key = db::service_key(cluster, service_name(service));
    match core.store.get::<ServiceRecord>(db::SERVICES, &key)? {
        Some(s) => Ok((key, s)),
        None => Err(EcsError::ServiceNotFound("Service not found.".into())),
    }
}

/// [`find`], refusing a service that is draining or inactive.
fn find_active(
    core: &Core,
    cluster: &str,
    service: &str,
) -> Result<(String, ServiceRecord), EcsError> {
    let (key, rec) = find(core, cluster, service)?;
    if rec.status != "ACTIVE" {
        return Err(EcsError::ServiceNotActive("Service was not ACTIVE.".into()));
    }
    Ok((key, rec))
}

/// How often an update is made again on a fresh read when the record
/// changed between its read and its write (a scheduler pass or a call
/// through another replica).
const UPDATE_ATTEMPTS: usize = 8;

/// UpdateService.
pub fn update(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: UpdateServiceRequest,
) -> Result<ServiceResponse, EcsError> {
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    check_controller(&req.rest)?;
    let mut rest = req.rest.clone();
    rest.remove("deploymentController");
    validate::refuse_unsupported(&rest, ACCEPTED, "UpdateService")?;
    let _serialized = core.services_lock();
    write_again(core, &cluster.name, &req.service, |rec| {
        updated(core, &cluster, &req, rec)
    })
}

/// Reads the ACTIVE service, changes it with `change` and writes it back
/// if nobody wrote it in between; else does it all again on the record as
/// it now is.
fn write_again(
    core: &Arc<Core>,
    cluster: &str,
    service: &str,
    change: impl Fn(&mut ServiceRecord) -> Result<(), EcsError>,
) -> Result<ServiceResponse, EcsError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let (key, mut rec) = find_active(core, cluster, service)?;
        let read = rec.version;
        change(&mut rec)?;
        rec.version = read + 1;
        let written =
            core.store
                .write(|w| match w.get::<ServiceRecord>(db::SERVICES, &key)? {
                    Some(now) if now.version == read => {
                        w.put(db::SERVICES, &key, &rec)?;
                        Ok::<_, EcsError>(true)
                    }
                    _ => Ok(false),
                })?;
        if written {
            return respond_and_wake(core, &rec);
        }
    }
    Err(EcsError::Server(
        "the service kept changing while it was being updated; try again".into(),
    ))
}

/// What UpdateService makes of `rec`.
fn updated(
    core: &Core,
    cluster: &ClusterRecord,
    req: &UpdateServiceRequest,
    rec: &mut ServiceRecord,
) -> Result<(), EcsError> {
    let now = clock::now();
    let (max, min, cb) = percents(
        req.deployment_configuration.as_ref(),
        (
            rec.maximum_percent,
            rec.minimum_healthy_percent,
            rec.circuit_breaker,
        ),
    )?;
    rec.maximum_percent = max;
    rec.minimum_healthy_percent = min;
    rec.circuit_breaker = cb;
    if let Some(n) = req.desired_count {
        rec.desired_count = check_desired(Some(n))?;
    }
    let platform = req
        .platform_version
        .clone()
        .unwrap_or_else(|| rec.platform_version.clone());
    let td = req
        .task_definition
        .clone()
        .unwrap_or_else(|| rec.task_definition.clone());
    let td_arn = check_definition(core, &td, &platform)?;
    let net = req
        .network_configuration
        .as_ref()
        .map(|n| network(core, n))
        .transpose()?;
    // A new strategy (checked against the cluster) redeploys, as in ECS.
    let strategy = match &req.capacity_provider_strategy {
        Some(s) if s.is_empty() => Some(cluster.default_capacity_provider_strategy.clone()),
        Some(s) => {
            crate::capacity::check_strategy(s, &cluster.capacity_providers)?;
            Some(s.clone())
        }
        None => None,
    }
    .filter(|s| *s != rec.capacity_provider_strategy);
    let redeploy = req.force_new_deployment == Some(true)
        || strategy.is_some()
        || td_arn != rec.task_definition
        || platform != rec.platform_version
        || net.is_some();
    if let Some(net) = net {
        rec.network_configuration = net;
    }
    if let Some(s) = strategy {
        rec.capacity_provider_strategy = s;
    }
    if let Some(p) = req.rest.get("propagateTags").and_then(Value::as_str) {
        rec.propagate_tags = Some(p.to_owned());
    }
    rec.task_definition = td_arn.clone();
    rec.platform_version = platform.clone();
    if redeploy {
        for d in &mut rec.deployments {
            d.status = "ACTIVE".into();
            d.updated_at = now;
        }
        rec.deployments.insert(
            0,
            new_deployment(cluster, &td_arn, rec.desired_count, &platform, now),
        );
        rec.consecutive_failures = 0;
        rec.next_launch_at = 0.0;
    }
    if let Some(p) = rec.deployments.iter_mut().find(|d| d.status == "PRIMARY") {
        p.desired_count = rec.desired_count;
        p.updated_at = now;
    }
    rec.steady = false;
    Ok(())
}

/// DeleteService: refused while desiredCount > 0 unless `force`; the
/// service drains (its tasks are stopped) and then becomes INACTIVE.
pub fn delete(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DeleteServiceRequest,
) -> Result<ServiceResponse, EcsError> {
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    let _serialized = core.services_lock();
    write_again(core, &cluster.name, &req.service, |rec| {
        if rec.desired_count > 0 && req.force != Some(true) {
            return Err(EcsError::InvalidParameter(
                "The service cannot be stopped while it is scaled above 0.".into(),
            ));
        }
        rec.status = "DRAINING".into();
        rec.desired_count = 0;
        for d in &mut rec.deployments {
            d.desired_count = 0;
        }
        Ok(())
    })
}

fn respond_and_wake(core: &Arc<Core>, rec: &ServiceRecord) -> Result<ServiceResponse, EcsError> {
    core.wake_scheduler();
    Ok(ServiceResponse {
        service: render(core, rec, false)?,
    })
}

/// DescribeServices.
pub fn describe(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DescribeServicesRequest,
) -> Result<DescribeServicesResponse, EcsError> {
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    if req.services.is_empty() || req.services.len() > 10 {
        return Err(EcsError::InvalidParameter(
            "services must name 1 to 10 services.".into(),
        ));
    }
    let with_tags = req.include.iter().any(|i| i == "TAGS");
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for s in &req.services {
        match find(core, &cluster.name, s) {
            Ok((_, rec)) => services.push(render(core, &rec, with_tags)?),
            Err(EcsError::ServiceNotFound(_)) => failures.push(Failure::missing(
                core.scope.service(&cluster.name, service_name(s)),
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(DescribeServicesResponse { services, failures })
}

/// ListServices: the cluster's services that are not INACTIVE.
pub fn list(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: ListServicesRequest,
) -> Result<ListServicesResponse, EcsError> {
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    let max = paging::max_results(req.max_results.or(Some(10)))?;
    if req.launch_type.as_deref().is_some_and(|l| l != "FARGATE") {
        return Ok(ListServicesResponse {
            service_arns: vec![],
            next_token: None,
        });
    }
    let all: Vec<(String, String)> = core
        .store
        .scan::<ServiceRecord>(db::SERVICES, &db::task_prefix(&cluster.name))?
        .into_iter()
        .filter(|(_, s)| s.status != "INACTIVE")
        .map(|(k, s)| (k, s.arn))
        .collect();
    let (service_arns, next_token) = paging::page(all, req.next_token.as_deref(), max)?;
    Ok(ListServicesResponse {
        service_arns,
        next_token,
    })
}

/// The `Service` shape, with the service's live tasks counted.
fn render(core: &Core, rec: &ServiceRecord, with_tags: bool) -> Result<Service, EcsError> {
    Ok(wire_service::render(
        rec,
        &tasks::live_in_group(core, &rec.cluster_name, &rec.group())?,
        with_tags,
    ))
}
