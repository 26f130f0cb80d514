//! DescribeCapacityProviders, PutClusterCapacityProviders and
//! CreateCapacityProvider (refused: Fargate only).

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};

use crate::capacity::{self, StrategyItem};
use crate::db;
use crate::error::EcsError;
use crate::model::cluster::ClusterRecord;
use crate::model::service::ServiceRecord;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::ops::clusters::{self, ClusterResponse};
use crate::paging;
use crate::service::Core;
use crate::wire::{Failure, Tag};

/// `DescribeCapacityProvidersRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeCapacityProvidersRequest {
    #[serde(default)]
    capacity_providers: Vec<String>,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

/// `CapacityProvider` (the built-in Fargate kinds have no provider
/// configuration).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProvider {
    capacity_provider_arn: String,
    name: String,
    status: &'static str,
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<Tag>>,
}

/// `DescribeCapacityProvidersResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeCapacityProvidersResponse {
    capacity_providers: Vec<CapacityProvider>,
    failures: Vec<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// `PutClusterCapacityProvidersRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutClusterCapacityProvidersRequest {
    cluster: String,
    capacity_providers: Vec<String>,
    default_capacity_provider_strategy: Vec<StrategyItem>,
}

/// `CreateCapacityProviderRequest` (only its name is looked at).
#[derive(Debug, Deserialize)]
pub struct CreateCapacityProviderRequest {
    name: String,
}

/// The `{}` no refused operation ever returns.
#[derive(Debug, Serialize)]
pub struct Never {}

/// DescribeCapacityProviders: FARGATE and FARGATE_SPOT, by name or ARN;
/// others are `MISSING` failures. `cluster` only narrows nothing: both
/// exist in every account.
pub fn describe(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DescribeCapacityProvidersRequest,
) -> Result<DescribeCapacityProvidersResponse, EcsError> {
    let tags = match req.include.as_slice() {
        [] => false,
        [t] if t == "TAGS" => true,
        _ => {
            return Err(EcsError::InvalidParameter(
                "include may only contain TAGS.".into(),
            ));
        }
    };
    if let Some(c) = req.cluster.as_deref() {
        core.active_cluster(Some(c))?;
    }
    let max = match req.max_results {
        None => 10,
        Some(n) if (1..=10).contains(&n) => n as usize,
        Some(n) => {
            return Err(EcsError::InvalidParameter(format!(
                "maxResults must be between 1 and 10 (got {n})."
            )));
        }
    };
    let render = |name: &str| CapacityProvider {
        capacity_provider_arn: core.scope.capacity_provider(name),
        name: name.to_owned(),
        status: "ACTIVE",
        kind: name.to_owned(),
        tags: tags.then(Vec::new),
    };
    let mut failures = Vec::new();
    let mut found = Vec::new();
    if req.capacity_providers.is_empty() {
        found.extend(capacity::BUILT_IN.iter().map(|n| (*n).to_owned()));
    } else {
        for w in &req.capacity_providers {
            let name = w
                .rsplit_once("capacity-provider/")
                .map_or(w.as_str(), |(_, n)| n);
            if capacity::exists(name) && !found.iter().any(|f| f == name) {
                found.push(name.to_owned());
            } else if !capacity::exists(name) {
                failures.push(Failure::missing(if w.starts_with("arn:") {
                    w.clone()
                } else {
                    core.scope.capacity_provider(w)
                }));
            }
        }
    }
    let keyed = found
        .into_iter()
        .enumerate()
        .map(|(i, n)| (format!("{i:04}"), n))
        .collect();
    let (page, next_token) = paging::page(keyed, req.next_token.as_deref(), max)?;
    Ok(DescribeCapacityProvidersResponse {
        capacity_providers: page.iter().map(|n| render(n)).collect(),
        failures,
        next_token,
    })
}

/// Checks a cluster's providers and default strategy (ECS's rules).
pub fn check_cluster(providers: &[String], strategy: &[StrategyItem]) -> Result<(), EcsError> {
    capacity::check_cluster_providers(providers)?;
    capacity::check_strategy(strategy, providers)
}

/// PutClusterCapacityProviders: replaces the cluster's providers and
/// default strategy. A provider that a live task or an ACTIVE service uses
/// cannot be removed (`ResourceInUseException`).
pub fn put_cluster(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: PutClusterCapacityProvidersRequest,
) -> Result<ClusterResponse, EcsError> {
    let current = core.active_cluster(Some(&req.cluster))?;
    check_cluster(
        &req.capacity_providers,
        &req.default_capacity_provider_strategy,
    )?;
    let _serialized = core.services_lock();
    let c = core.store.write(|w| {
        let mut c: ClusterRecord = w
            .get(db::CLUSTERS, &current.name)?
            .filter(|c: &ClusterRecord| c.active)
            .ok_or_else(EcsError::cluster_not_found)?;
        let removed: Vec<&String> = c
            .capacity_providers
            .iter()
            .filter(|p| !req.capacity_providers.contains(p))
            .collect();
        if !removed.is_empty() {
            let tasks: Vec<(String, TaskRecord)> = w.scan(db::TASKS, &db::task_prefix(&c.name))?;
            let services: Vec<(String, ServiceRecord)> =
                w.scan(db::SERVICES, &db::task_prefix(&c.name))?;
            let used = |p: &String| {
                tasks.iter().any(|(_, t)| {
                    t.last_status != TaskStatus::Stopped
                        && t.capacity_provider_name.as_ref() == Some(p)
                }) || services.iter().any(|(_, s)| {
                    s.status != "INACTIVE"
                        && s.capacity_provider_strategy
                            .iter()
                            .any(|i| &i.capacity_provider == p)
                })
            };
            if let Some(p) = removed.into_iter().find(|p| used(p)) {
                return Err(EcsError::ResourceInUse(format!(
                    "The specified capacity provider '{p}' is in use and cannot be removed."
                )));
            }
        }
        c.capacity_providers = req.capacity_providers;
        c.default_capacity_provider_strategy = req.default_capacity_provider_strategy;
        w.put(db::CLUSTERS, &c.name, &c)?;
        Ok(c)
    })?;
    clusters::respond(core, &c)
}

/// CreateCapacityProvider: ferry's accounts are Fargate-only, so there
/// is nothing an Auto Scaling group or managed-instances provider could
/// run on.
pub fn create(
    _core: &Arc<Core>,
    _ctx: &RequestContext,
    req: CreateCapacityProviderRequest,
) -> Result<Never, EcsError> {
    if capacity::exists(&req.name) {
        return Err(EcsError::Client(format!(
            "The capacity provider name '{}' is reserved: FARGATE and FARGATE_SPOT exist in every account.",
            req.name
        )));
    }
    Err(EcsError::Client(
        "ferry runs tasks on AWS Fargate only: capacity providers for Auto Scaling groups or managed instances cannot be created. Use the FARGATE and FARGATE_SPOT capacity providers.".into(),
    ))
}
