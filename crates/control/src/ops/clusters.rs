//! CreateCluster, DescribeClusters, ListClusters, UpdateCluster,
//! DeleteCluster.

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};

use crate::arn;
use crate::capacity::StrategyItem;
use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::model::cluster::{self, ClusterRecord};
use crate::model::task::{TaskRecord, TaskStatus};
use crate::paging;
use crate::service::Core;
use crate::validate;
use crate::wire::cluster::{Cluster, ClusterConfiguration, ClusterSetting, ServiceConnectDefaults};
use crate::wire::{Failure, KeyValuePair, Tag};

/// `CreateClusterRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateClusterRequest {
    #[serde(default)]
    cluster_name: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    settings: Vec<ClusterSetting>,
    #[serde(default)]
    configuration: Option<ClusterConfiguration>,
    #[serde(default)]
    capacity_providers: Vec<String>,
    #[serde(default)]
    default_capacity_provider_strategy: Vec<StrategyItem>,
    #[serde(default)]
    service_connect_defaults: Option<ServiceConnectDefaults>,
}

/// `DescribeClustersRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeClustersRequest {
    #[serde(default)]
    clusters: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// `ListClustersRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClustersRequest {
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
}

/// `UpdateClusterRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateClusterRequest {
    cluster: String,
    #[serde(default)]
    settings: Option<Vec<ClusterSetting>>,
    #[serde(default)]
    configuration: Option<ClusterConfiguration>,
    #[serde(default)]
    service_connect_defaults: Option<ServiceConnectDefaults>,
}

/// `DeleteClusterRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteClusterRequest {
    cluster: String,
}

/// `CreateClusterResponse` / `UpdateClusterResponse` / `DeleteClusterResponse`.
#[derive(Debug, Serialize)]
pub struct ClusterResponse {
    cluster: Cluster,
}

/// `DescribeClustersResponse`.
#[derive(Debug, Serialize)]
pub struct DescribeClustersResponse {
    clusters: Vec<Cluster>,
    failures: Vec<Failure>,
}

/// `ListClustersResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClustersResponse {
    cluster_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// Which optional parts to render.
#[derive(Debug, Clone, Copy, Default)]
struct Include {
    tags: bool,
    settings: bool,
    configurations: bool,
    statistics: bool,
    attachments: bool,
}

impl Include {
    const ALL: Include = Include {
        tags: true,
        settings: true,
        configurations: true,
        statistics: false,
        attachments: false,
    };

    fn parse(v: &[String]) -> Result<Self, EcsError> {
        let mut i = Include::default();
        for f in v {
            match f.as_str() {
                "TAGS" => i.tags = true,
                "SETTINGS" => i.settings = true,
                "CONFIGURATIONS" => i.configurations = true,
                "STATISTICS" => i.statistics = true,
                "ATTACHMENTS" => i.attachments = true,
                other => {
                    return Err(EcsError::InvalidParameter(format!(
                        "include value '{other}' is invalid: use ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS or TAGS."
                    )));
                }
            }
        }
        Ok(i)
    }
}

fn render(core: &Core, c: &ClusterRecord, inc: Include) -> Result<Cluster, EcsError> {
    let tasks: Vec<(String, TaskRecord)> = core.store.scan(db::TASKS, &db::task_prefix(&c.name))?;
    let running = tasks
        .iter()
        .filter(|(_, t)| t.last_status == TaskStatus::Running)
        .count() as u32;
    let pending = tasks.iter().filter(|(_, t)| t.is_pending()).count() as u32;
    let services = core
        .store
        .scan::<crate::model::service::ServiceRecord>(db::SERVICES, &db::task_prefix(&c.name))?
        .into_iter()
        .filter(|(_, s)| s.status == "ACTIVE")
        .count();
    Ok(Cluster {
        cluster_arn: c.arn.clone(),
        cluster_name: c.name.clone(),
        configuration: if inc.configurations {
            c.configuration.clone()
        } else {
            None
        },
        status: c.status().into(),
        registered_container_instances_count: 0,
        running_tasks_count: running,
        pending_tasks_count: pending,
        active_services_count: services as u32,
        statistics: inc.statistics.then(|| {
            vec![
                KeyValuePair::new("runningFargateTasksCount", running.to_string()),
                KeyValuePair::new("pendingFargateTasksCount", pending.to_string()),
                KeyValuePair::new("activeFargateServiceCount", services.to_string()),
            ]
        }),
        tags: inc.tags.then(|| c.tags.clone()),
        settings: inc.settings.then(|| c.settings.clone()),
        capacity_providers: c.capacity_providers.clone(),
        default_capacity_provider_strategy: c.default_capacity_provider_strategy.clone(),
        service_connect_defaults: c.service_connect_defaults.clone(),
        attachments: inc.attachments.then(Vec::new),
    })
}

/// The `{"cluster": ...}` answer of a write, with everything included.
pub fn respond(core: &Core, c: &ClusterRecord) -> Result<ClusterResponse, EcsError> {
    Ok(ClusterResponse {
        cluster: render(core, c, Include::ALL)?,
    })
}

/// Checks `configuration` and returns the checked Fargate storage key ARN.
fn check_configuration(
    core: &Core,
    cluster: &str,
    cfg: Option<&ClusterConfiguration>,
) -> Result<Option<String>, EcsError> {
    let Some(key) = cfg
        .and_then(|c| c.managed_storage_configuration.as_ref())
        .and_then(|m| m.fargate_ephemeral_storage_kms_key_id.as_deref())
    else {
        return Ok(None);
    };
    let bad = |e| EcsError::InvalidParameter(format!("fargateEphemeralStorageKmsKeyId: {e}"));
    let arn = core.keys.check_cluster_key(key).map_err(bad)?;
    core.keys.dry_run_for_cluster(&arn, cluster).map_err(bad)?;
    Ok(Some(arn))
}

fn check_settings(settings: &[ClusterSetting]) -> Result<(), EcsError> {
    for s in settings {
        if s.name.as_deref() != Some("containerInsights") {
            return Err(EcsError::InvalidParameter(format!(
                "Cluster setting name '{}' is invalid: the only setting is containerInsights.",
                s.name.as_deref().unwrap_or("")
            )));
        }
        if !matches!(
            s.value.as_deref(),
            Some("enabled" | "disabled" | "enhanced")
        ) {
            return Err(EcsError::InvalidParameter(
                "containerInsights must be enabled, disabled or enhanced.".into(),
            ));
        }
    }
    Ok(())
}

fn check_service_connect(d: Option<&ServiceConnectDefaults>) -> Result<(), EcsError> {
    if d.is_some_and(|d| d.namespace.is_empty() || d.namespace.len() > 1024) {
        return Err(EcsError::InvalidParameter(
            "serviceConnectDefaults.namespace must be 1 to 1024 characters long.".into(),
        ));
    }
    Ok(())
}

/// CreateCluster. Creating an ACTIVE cluster that exists returns it
/// unchanged, as ECS does.
pub fn create(
    core: &Arc<Core>,
    ctx: &RequestContext,
    mut req: CreateClusterRequest,
) -> Result<ClusterResponse, EcsError> {
    // A cluster created without settings takes the creator's
    // containerInsights account setting, when someone set one.
    if req.settings.is_empty() {
        let s = crate::ops::account_settings::effective_for_caller(core, ctx, "containerInsights")?;
        if s.kind == "user" {
            req.settings.push(ClusterSetting {
                name: Some(s.name),
                value: Some(s.value),
            });
        }
    }
    let name = req.cluster_name.unwrap_or_else(|| "default".into());
    cluster::check_name(&name).map_err(EcsError::InvalidParameter)?;
    validate::check_tags(&req.tags)?;
    check_settings(&req.settings)?;
    crate::ops::capacity_providers::check_cluster(
        &req.capacity_providers,
        &req.default_capacity_provider_strategy,
    )?;
    check_service_connect(req.service_connect_defaults.as_ref())?;
    let storage_key_arn = check_configuration(core, &name, req.configuration.as_ref())?;
    let record = ClusterRecord {
        arn: core.scope.cluster(&name),
        name: name.clone(),
        active: true,
        tags: req.tags,
        settings: req.settings,
        configuration: req.configuration,
        storage_key_arn,
        created_at: clock::now(),
        capacity_providers: req.capacity_providers,
        default_capacity_provider_strategy: req.default_capacity_provider_strategy,
        service_connect_defaults: req.service_connect_defaults,
    };
    let c = core.store.write(|w| {
        if let Some(existing) = w.get::<ClusterRecord>(db::CLUSTERS, &name)?
            && existing.active
        {
            return Ok::<_, EcsError>(existing);
        }
        w.put(db::CLUSTERS, &name, &record)?;
        Ok(record)
    })?;
    Ok(ClusterResponse {
        cluster: render(core, &c, Include::ALL)?,
    })
}

/// DescribeClusters.
pub fn describe(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DescribeClustersRequest,
) -> Result<DescribeClustersResponse, EcsError> {
    let inc = Include::parse(&req.include)?;
    let wanted = if req.clusters.is_empty() {
        vec!["default".to_owned()]
    } else {
        req.clusters
    };
    if wanted.len() > 100 {
        return Err(EcsError::InvalidParameter(
            "clusters can have at most 100 items.".into(),
        ));
    }
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for w in wanted {
        let rec = match arn::cluster_name(&w) {
            Some(n) => core.store.get::<ClusterRecord>(db::CLUSTERS, &n)?,
            None => None,
        };
        match rec {
            Some(c) => clusters.push(render(core, &c, inc)?),
            None => failures.push(Failure::missing(if w.starts_with("arn:") {
                w
            } else {
                core.scope.cluster(&w)
            })),
        }
    }
    Ok(DescribeClustersResponse { clusters, failures })
}

/// ListClusters: the ACTIVE clusters.
pub fn list(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: ListClustersRequest,
) -> Result<ListClustersResponse, EcsError> {
    let max = paging::max_results(req.max_results)?;
    let all: Vec<(String, String)> = core
        .store
        .scan::<ClusterRecord>(db::CLUSTERS, "")?
        .into_iter()
        .filter(|(_, c)| c.active)
        .map(|(k, c)| (k, c.arn))
        .collect();
    let (cluster_arns, next_token) = paging::page(all, req.next_token.as_deref(), max)?;
    Ok(ListClustersResponse {
        cluster_arns,
        next_token,
    })
}

/// UpdateCluster. `settings`, `configuration.executeCommandConfiguration`
/// and `configuration.managedStorageConfiguration` each replace what was
/// there when given; a changed storage key applies to tasks started
/// afterwards.
pub fn update(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: UpdateClusterRequest,
) -> Result<ClusterResponse, EcsError> {
    let current = core.active_cluster(Some(&req.cluster))?;
    if let Some(s) = &req.settings {
        check_settings(s)?;
    }
    check_service_connect(req.service_connect_defaults.as_ref())?;
    let new_key = match &req.configuration {
        Some(c) if c.managed_storage_configuration.is_some() => {
            Some(check_configuration(core, &current.name, Some(c))?)
        }
        _ => None,
    };
    let c = core.store.write(|w| {
        let mut c: ClusterRecord = w
            .get(db::CLUSTERS, &current.name)?
            .filter(|c: &ClusterRecord| c.active)
            .ok_or_else(EcsError::cluster_not_found)?;
        if let Some(s) = req.settings {
            c.settings = s;
        }
        if let Some(cfg) = req.configuration {
            let mut merged = c.configuration.take().unwrap_or_default();
            if cfg.execute_command_configuration.is_some() {
                merged.execute_command_configuration = cfg.execute_command_configuration;
            }
            if cfg.managed_storage_configuration.is_some() {
                merged.managed_storage_configuration = cfg.managed_storage_configuration;
            }
            c.configuration = Some(merged);
        }
        if let Some(k) = new_key {
            c.storage_key_arn = k;
        }
        if let Some(d) = req.service_connect_defaults {
            c.service_connect_defaults = Some(d);
        }
        w.put(db::CLUSTERS, &c.name, &c)?;
        Ok::<_, EcsError>(c)
    })?;
    Ok(ClusterResponse {
        cluster: render(core, &c, Include::ALL)?,
    })
}

/// DeleteCluster: refused while tasks are not STOPPED; the record stays,
/// INACTIVE, so DescribeClusters still finds it.
pub fn delete(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DeleteClusterRequest,
) -> Result<ClusterResponse, EcsError> {
    let current = core.active_cluster(Some(&req.cluster))?;
    let c = core.store.write(|w| {
        let services: Vec<(String, crate::model::service::ServiceRecord)> =
            w.scan(db::SERVICES, &db::task_prefix(&current.name))?;
        if services.iter().any(|(_, s)| s.status != "INACTIVE") {
            return Err(EcsError::ClusterContainsServices(
                "The Cluster cannot be deleted while Services are active.".into(),
            ));
        }
        let tasks: Vec<(String, TaskRecord)> =
            w.scan(db::TASKS, &db::task_prefix(&current.name))?;
        if tasks
            .iter()
            .any(|(_, t)| t.last_status != TaskStatus::Stopped)
        {
            return Err(EcsError::ClusterContainsTasks(
                "The Cluster cannot be deleted while Tasks are active.".into(),
            ));
        }
        let mut c = current.clone();
        c.active = false;
        w.put(db::CLUSTERS, &c.name, &c)?;
        Ok(c)
    })?;
    Ok(ClusterResponse {
        cluster: render(core, &c, Include::ALL)?,
    })
}
