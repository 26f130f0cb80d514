//! Launching tasks: [`launch`] records `count` tasks (PROVISIONING) in one
//! transaction, then hands each plan to the runtime. Its input, a
//! [`LaunchSpec`], is already resolved and validated by the caller (RunTask
//! or the service scheduler); what is left here are the server's own rules
//! (platform version policy, the storage key) and the bookkeeping.

use std::sync::Arc;

use ferry_proto::plan::{HealthStatus, StoragePlan};

use crate::capacity::{self, Placement};
use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::hosts::Reservation;
use crate::hosts::assign::start_here;
use crate::hosts::placement::{self, Candidate, Demand, Fleet};
use crate::identity;
use crate::leader::Leader;
use crate::model::cluster::ClusterRecord;
use crate::model::task::{ContainerRecord, TaskRecord, TaskRoles, TaskStatus};
use crate::model::task_definition::{TaskDefRecord, TaskDefSpec};
use crate::networks::{AwsVpc, NetworkRefusal};
use crate::plan::{self, DEFAULT_STORAGE_GIB, PlannedTask};
use crate::service::Core;
use crate::validate::{self, Platform};
use crate::wire::task::{ContainerOverride, TaskOverride};
use crate::wire::{Failure, Tag};

/// The `failures` reason of a task the host refused for want of disk
/// space (ECS's `RESOURCE:*` family; the detail names the sizes).
pub const NO_STORAGE: &str = "RESOURCE:EPHEMERAL_STORAGE";

/// The `failures` reason of a task whose subnets have no free address.
pub const NO_ADDRESS: &str = "RESOURCE:ENI";

/// What [`launch`] did: the tasks it started, and the ones the host
/// refused (RunTask's `failures`).
#[derive(Debug)]
pub struct Launched {
    /// The started tasks' records.
    pub tasks: Vec<TaskRecord>,
    /// One per refused task.
    pub failures: Vec<Failure>,
}

/// Which customer-managed key protects the tasks' storage (platform
/// version 1.4.0; 1.3.0 storage is unencrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKeyChoice {
    /// The cluster's current key (`storage_key_arn`), or the platform key
    /// when it has none. RunTask.
    Cluster,
    /// The key a service deployment pinned when it was created (`None`:
    /// the platform key): a cluster key change applies to new deployments
    /// only.
    Pinned(Option<String>),
}

/// Everything [`launch`] needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The ACTIVE cluster the tasks run in.
    pub cluster: ClusterRecord,
    /// The ACTIVE task definition revision.
    pub task_definition: TaskDefRecord,
    /// How many tasks, 1..=10.
    pub count: u32,
    /// RunTask overrides, checked with [`plan::effective_size`].
    pub overrides: TaskOverride,
    /// The resolved platform version.
    pub platform: Platform,
    /// The subnets and security groups the tasks' ENIs are made in.
    pub network: AwsVpc,
    /// Which key protects the storage.
    pub storage_key: StorageKeyChoice,
    /// `startedBy`.
    pub started_by: Option<String>,
    /// `group` (RunTask's default is `family:FAMILY`).
    pub group: String,
    /// The tasks' tags, after `propagateTags`.
    pub tags: Vec<Tag>,
    /// How each task gets its capacity provider (base, then weight).
    pub placement: Placement,
    /// Who launches: the scheduler lease's holder, checked in the
    /// transaction that records the tasks (`Leader(None)`: RunTask, not
    /// fenced).
    pub leader: Leader,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A task definition that new tasks may use: it exists and is ACTIVE.
/// `id` is `family`, `family:revision` or an ARN.
pub fn runnable_task_definition(core: &Core, id: &str) -> Result<TaskDefRecord, EcsError> {
    let td = core.find_task_definition(id)?.ok_or_else(|| {
        EcsError::Client(format!(
            "TaskDefinition not found: '{id}' names no registered task definition."
        ))
    })?;
    if !td.active {
        return Err(EcsError::Client(format!(
            "TaskDefinition is inactive: {} was deregistered.",
            td.arn
        )));
    }
    Ok(td)
}

/// The platform-version rules: 1.3.0 (unencrypted storage) may be
/// forbidden by the operator, and cannot hold more than 20 GiB.
pub fn check_platform(core: &Core, platform: Platform, size: Option<u32>) -> Result<(), EcsError> {
    if platform != Platform::V1_3_0 {
        return Ok(());
    }
    if !core.cfg.allow_unencrypted_storage {
        return Err(EcsError::Client(
            "Platform version 1.3.0 runs tasks on unencrypted ephemeral storage, which this server forbids (ferry server --require-encrypted-storage). Use platform version 1.4.0 (or LATEST).".into(),
        ));
    }
    if size.unwrap_or(DEFAULT_STORAGE_GIB) > DEFAULT_STORAGE_GIB {
        return Err(EcsError::Client(
            "Ephemeral storage larger than 20 GiB requires platform version 1.4.0 or later.".into(),
        ));
    }
    Ok(())
}

/// How the storage is protected, and the customer-managed key if one is.
fn storage(
    core: &Core,
    spec: &LaunchSpec,
    size: Option<u32>,
) -> Result<(StoragePlan, Option<String>), EcsError> {
    if spec.platform == Platform::V1_3_0 {
        check_platform(core, spec.platform, size)?;
        return Ok((StoragePlan::Unencrypted, None));
    }
    let cmk = match &spec.storage_key {
        StorageKeyChoice::Cluster => spec.cluster.storage_key_arn.clone(),
        StorageKeyChoice::Pinned(key) => key.clone(),
    };
    match cmk {
        Some(cmk) => Ok((
            StoragePlan::Encrypted {
                kms_key_arn: cmk.clone(),
            },
            Some(cmk),
        )),
        None => {
            let key = core.keys.platform_key_arn().map_err(|e| {
                EcsError::Server(format!(
                    "the platform-managed storage key is unavailable: {e}"
                ))
            })?;
            Ok((StoragePlan::Encrypted { kms_key_arn: key }, None))
        }
    }
}

/// A task built and given its ENI, waiting for its transaction.
struct Pending {
    record: TaskRecord,
    demand: Demand,
    /// The local runtime refused its storage: not on this host.
    not_local: bool,
    /// The local runtime admitted its storage (a local start need not ask
    /// again).
    admitted: bool,
    /// Not on a remote agent.
    needs_local: bool,
}

/// Records and starts the tasks of `spec` that fit on a host; returns
/// their records as they stand after the runtime was called, and a failure
/// per task that fits nowhere.
///
/// Each task is placed on a live host ([`crate::hosts::placement`]): once
/// before the transaction, to choose the subnets its ENI may be made in
/// (and to ask this host's runtime about its storage), and again inside
/// the transaction that records it, against every reservation as it is
/// then, so two launches (on any replicas) racing for the last capacity
/// cannot both have it. The task's reservation is written in the same
/// transaction. Tasks placed on this host start here at once; others wait
/// for their host's assignment loop ([`crate::hosts::assign`]).
pub fn launch(core: &Arc<Core>, spec: LaunchSpec) -> Result<Launched, EcsError> {
    let (_, _, size) = plan::effective_size(&spec.task_definition.spec, &spec.overrides)?;
    let (storage, cmk_arn) = storage(core, &spec, size)?;
    let LaunchSpec {
        cluster,
        task_definition: td,
        count,
        overrides,
        platform,
        network,
        started_by,
        group,
        tags,
        placement,
        leader,
        ..
    } = spec;
    // One provider per task, in launch order (none with a launch type).
    let mut providers = capacity::place(&placement.strategy, &placement.placed, count).into_iter();

    // The roles: RunTask's overrides win over the definition's; names
    // become ARNs in this account.
    let account = &core.cfg.account;
    let task_role = overrides
        .task_role_arn
        .as_deref()
        .or(td.task_role())
        .map(|r| validate::role_arn(r, account));
    let execution_role = overrides
        .execution_role_arn
        .as_deref()
        .or(td.execution_role())
        .map(|r| validate::role_arn(r, account));

    // What only a replica's own host gives a task yet: role sessions
    // (served by the metadata endpoint from the replica's session table),
    // secret values, registry logins and EFS mounts. Such a task is not
    // placed on a remote agent (docs/control-plane.md, "Remote agents").
    let needs_local = task_role.is_some()
        || td
            .spec
            .containers
            .iter()
            .any(|c| !c.secrets.is_empty() || c.repository_credentials.is_some())
        || td
            .spec
            .volumes
            .iter()
            .any(|v| matches!(v.kind, ferry_proto::plan::VolumeKind::Efs { .. }));

    // A task that mounts an EFS file system runs on the host it lives on.
    let fs_host = crate::hosts::file_systems_host(core, &td.spec)?;

    // Every subnet and group must exist before anything is allocated.
    core.networks.check(&network).map_err(network_error)?;
    let mut fleet = Fleet::load(core)?;
    // Hosts with --subnet take tasks whose subnets lie inside theirs.
    let cidrs = if fleet.restricts_subnets() {
        core.networks
            .subnet_cidrs(&network.subnets)
            .map_err(network_error)?
    } else {
        Vec::new()
    };
    let served = |h: &Candidate| -> Vec<String> {
        network
            .subnets
            .iter()
            .filter(|s| h.subnet.is_none() || cidrs.iter().any(|(id, c)| id == *s && h.serves(c)))
            .cloned()
            .collect()
    };
    let now = clock::now();
    let overrides_echo = serde_json::to_value(echo_overrides(&overrides, &td.spec))
        .map_err(|e| EcsError::Server(format!("encoding overrides: {e}")))?;
    let mut pending: Vec<Pending> = Vec::with_capacity(count as usize);
    let mut failures = Vec::new();
    for _ in 0..count {
        let capacity_provider_name = providers.next();
        let task_id = new_id();
        let task_arn = core.scope.task(&cluster.name, &task_id);
        let mut p = plan::build(
            PlannedTask {
                task_arn,
                task_id: task_id.clone(),
                cluster_name: cluster.name.clone(),
                account: core.cfg.account.clone(),
                region: core.cfg.region.clone(),
            },
            &td.spec,
            &overrides,
            storage.clone(),
        )?;
        let demand = Demand::of(&p);
        // A first choice, to know the ENI's subnets; this host's runtime
        // is asked about the storage before anything is recorded (a
        // refused task leaves no record, and goes to another host if one
        // can take it).
        let mut not_local = false;
        let mut storage_refusal = None;
        let chosen = loop {
            let accept = |h: &Candidate| {
                !(served(h).is_empty() || not_local && h.local || needs_local && h.remote)
                    && fs_host.as_deref().is_none_or(|f| f == h.name)
            };
            match placement::choose(&fleet.hosts, demand, &accept) {
                Ok(i) if fleet.hosts[i].local => match core.runtime.admit(&p) {
                    Ok(()) => break Ok((i, true)),
                    Err(detail) => {
                        not_local = true;
                        storage_refusal = Some(Failure {
                            arn: Some(cluster.arn.clone()),
                            reason: NO_STORAGE.into(),
                            detail: Some(detail),
                        });
                    }
                },
                Ok(i) => break Ok((i, false)),
                Err(refusal) => {
                    break Err(storage_refusal
                        .take()
                        .unwrap_or_else(|| refusal.failure(demand, &network.subnets)));
                }
            }
        };
        let (host, admitted) = match chosen {
            Ok(c) => c,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        fleet.take(host, demand);
        let net = AwsVpc {
            subnets: served(&fleet.hosts[host]),
            security_groups: network.security_groups.clone(),
        };
        let attachment_id = uuid::Uuid::new_v4().to_string();
        let eni = match core
            .networks
            .attach(&net, &core.scope.attachment(&attachment_id))
        {
            Ok(eni) => eni,
            Err(NetworkRefusal::NoAddress(detail)) => {
                failures.push(Failure {
                    arn: Some(cluster.arn.clone()),
                    reason: NO_ADDRESS.into(),
                    detail: Some(detail),
                });
                continue;
            }
            Err(e) => {
                detach_all(core, pending.iter().map(|p| &p.record));
                return Err(network_error(e));
            }
        };
        let (eni_id, subnet_id) = (eni.eni_id.clone(), eni.subnet_id.clone());
        p.network = Some(eni);
        let credentials_id = task_role.as_ref().map(|_| identity::new_credentials_id());
        if let Some(id) = &credentials_id {
            plan::add_credentials_uri(&mut p, id);
        }
        // The plan keeps the definition's container order.
        let containers = p
            .containers
            .iter()
            .zip(td.spec.containers.iter())
            .map(|(c, def)| ContainerRecord {
                name: c.name.clone(),
                image: c.image.clone(),
                arn: core.scope.container(&cluster.name, &task_id, &new_id()),
                essential: c.essential,
                last_status: "PENDING".into(),
                exit_code: None,
                reason: None,
                ports: c
                    .port_mappings
                    .iter()
                    .map(|m| (m.container_port, m.protocol.clone()))
                    .collect(),
                cpu: def.cpu,
                memory: def.memory,
                memory_reservation: def.memory_reservation,
                health_status: HealthStatus::Unknown,
            })
            .collect();
        let record = TaskRecord {
            plan: p,
            cluster_arn: cluster.arn.clone(),
            task_definition_arn: td.arn.clone(),
            family: td.family.clone(),
            last_status: TaskStatus::Provisioning,
            desired_status: TaskStatus::Running,
            platform_version: platform.as_str().into(),
            requested_storage_gib: size,
            cmk_arn: cmk_arn.clone(),
            containers,
            attachment_id,
            eni_id,
            subnet_id,
            private_ip: None,
            created_at: now,
            connectivity_at: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            stopping_at: None,
            execution_stopped_at: None,
            stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            started_by: started_by.clone(),
            group: group.clone(),
            overrides: overrides_echo.clone(),
            tags: tags.clone(),
            protected_until: None,
            roles: TaskRoles {
                task_role_arn: task_role.clone(),
                execution_role_arn: execution_role.clone(),
                credentials_id,
            },
            capacity_provider_name,
            host: fleet.hosts[host].name.clone(),
            version: 1,
        };
        pending.push(Pending {
            record,
            demand,
            not_local,
            admitted,
            needs_local,
        });
    }
    if pending.is_empty() {
        return Ok(Launched {
            tasks: Vec::new(),
            failures,
        });
    }
    let local = core.host_name().map(str::to_owned);
    // The choice again, and the reservation, in the transaction that
    // records the tasks; the tasks placed here are held before the loop
    // can see them.
    let deciding = core.local.held.decide();
    let written = core.store.write(|w| {
        // The cluster may have been deleted meanwhile.
        if !w
            .get::<ClusterRecord>(db::CLUSTERS, &cluster.name)?
            .is_some_and(|c| c.active)
        {
            return Err(EcsError::cluster_not_found());
        }
        leader.check(w)?;
        let mut now_fleet = Fleet::load_in(core, w, &fleet)?;
        let mut placed = Vec::new();
        let mut refused = Vec::new();
        for (n, p) in pending.iter().enumerate() {
            let eni = p.record.plan.network.as_ref().map(|n| n.subnet_cidr);
            let accept = |h: &Candidate| {
                !(p.not_local && h.local || p.needs_local && h.remote)
                    && eni.is_none_or(|c| h.serves(&c))
                    && fs_host.as_deref().is_none_or(|f| f == h.name)
            };
            match now_fleet.pick(w, p.demand, Some(&p.record.host), &accept)? {
                Ok(i) => {
                    now_fleet.take(i, p.demand);
                    let mut t = p.record.clone();
                    t.host = now_fleet.hosts[i].name.clone();
                    let key = db::task_key(&cluster.name, &t.plan.task_id);
                    w.put(db::TASKS, &key, &t)?;
                    w.put(
                        db::PLACEMENTS,
                        &db::placement_key(&t.host, &key),
                        &Reservation::of(&t),
                    )?;
                    placed.push((n, t));
                }
                Err(refusal) => {
                    refused.push((n, refusal.failure(p.demand, &network.subnets)));
                }
            }
        }
        Ok((placed, refused))
    });
    let (placed, refused) = match written {
        Ok(r) => r,
        Err(e) => {
            drop(deciding);
            detach_all(core, pending.iter().map(|p| &p.record));
            return Err(e);
        }
    };
    for (_, t) in placed
        .iter()
        .filter(|(_, t)| Some(&t.host) == local.as_ref())
    {
        core.local
            .held
            .insert(&db::task_key(&cluster.name, &t.plan.task_id), t.arn());
    }
    drop(deciding);
    for (n, f) in refused {
        core.networks.detach(&pending[n].record.eni_id);
        failures.push(f);
    }
    for (_, t) in &placed {
        core.tasks
            .refresh(&core.store, &db::task_key(&cluster.name, &t.plan.task_id))?;
    }
    let mut out = Vec::with_capacity(placed.len());
    for (n, t) in placed {
        let key = db::task_key(&cluster.name, &t.plan.task_id);
        if Some(&t.host) == local.as_ref() {
            // The task's identity (role sessions, secrets) before its
            // containers: a failure stops it as the runtime would.
            start_here(core, &t, &td.spec, pending[n].admitted);
        }
        // Another host's task is started by that host's assignment loop.
        // The runtime may already have reported (e.g. a failure to start).
        out.push(core.store.get(db::TASKS, &key)?.unwrap_or(t));
    }
    Ok(Launched {
        tasks: out,
        failures,
    })
}

/// Frees the ENIs of tasks that will not be recorded.
fn detach_all<'a>(core: &Core, records: impl Iterator<Item = &'a TaskRecord>) {
    for t in records {
        core.networks.detach(&t.eni_id);
    }
}

/// A refused network as ECS reports it: ClientException with EC2's words.
fn network_error(e: NetworkRefusal) -> EcsError {
    match e {
        NetworkRefusal::Invalid(m) | NetworkRefusal::NoAddress(m) => EcsError::Client(m),
        NetworkRefusal::Failed(m) => EcsError::Server(format!("the VPC service failed: {m}")),
    }
}

/// ECS echoes `overrides` with one entry per container.
fn echo_overrides(ov: &TaskOverride, spec: &TaskDefSpec) -> TaskOverride {
    let mut out = ov.clone();
    for c in spec.containers.iter().map(|c| &c.run) {
        if !out
            .container_overrides
            .iter()
            .any(|o| o.name.as_deref() == Some(&c.name))
        {
            out.container_overrides.push(ContainerOverride {
                name: Some(c.name.clone()),
                ..Default::default()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ferry_proto::plan::StoragePlan;
    use serde_json::json;

    use super::*;
    use crate::tests::{CMK, Env, PLATFORM_KEY, env, source_doc};

    /// A spec for one task of the registered definition in cluster `c`.
    fn spec(e: &Env, cluster: &str) -> LaunchSpec {
        let core = e.svc.core();
        LaunchSpec {
            cluster: core.active_cluster(Some(cluster)).unwrap(),
            task_definition: runnable_task_definition(core, "fargate-task-definition").unwrap(),
            count: 1,
            overrides: TaskOverride::default(),
            platform: Platform::V1_4_0,
            network: AwsVpc {
                subnets: vec!["subnet-9".into()],
                security_groups: vec![],
            },
            storage_key: StorageKeyChoice::Cluster,
            started_by: None,
            group: "family:fargate-task-definition".into(),
            tags: vec![],
            placement: Placement::default(),
            leader: Leader(None),
        }
    }

    fn setup() -> Env {
        let e = env();
        e.ok(
            "CreateCluster",
            json!({"clusterName": "c", "configuration": {"managedStorageConfiguration":
                {"fargateEphemeralStorageKmsKeyId": CMK}}}),
        );
        let mut doc = source_doc();
        doc["containerDefinitions"][0]["cpu"] = 128.into();
        doc["containerDefinitions"][0]["memoryReservation"] = 64.into();
        e.ok("RegisterTaskDefinition", doc);
        e
    }

    #[test]
    fn the_storage_key_choice_picks_the_key() {
        let e = setup();
        let core = e.svc.core();
        let cases = [
            (StorageKeyChoice::Cluster, CMK, Some(CMK)),
            (StorageKeyChoice::Pinned(None), PLATFORM_KEY, None),
            (
                StorageKeyChoice::Pinned(Some("arn:aws:kms:r:a:key/old".into())),
                "arn:aws:kms:r:a:key/old",
                Some("arn:aws:kms:r:a:key/old"),
            ),
        ];
        for (choice, key, cmk) in cases {
            let mut s = spec(&e, "c");
            s.storage_key = choice.clone();
            let t = launch(core, s).unwrap().tasks.remove(0);
            assert_eq!(
                t.plan.storage,
                StoragePlan::Encrypted {
                    kms_key_arn: key.into()
                },
                "{choice:?}"
            );
            assert_eq!(t.cmk_arn.as_deref(), cmk, "{choice:?}");
        }
        // 1.3.0 is unencrypted whatever the choice.
        let mut s = spec(&e, "c");
        s.platform = Platform::V1_3_0;
        let t = launch(core, s).unwrap().tasks.remove(0);
        assert_eq!(t.plan.storage, StoragePlan::Unencrypted);
        assert_eq!((t.cmk_arn, t.platform_version.as_str()), (None, "1.3.0"));
    }

    #[test]
    fn the_spec_is_what_the_tasks_get() {
        let e = setup();
        let mut s = spec(&e, "c");
        s.count = 2;
        s.started_by = Some("me".into());
        s.group = "g".into();
        s.tags = vec![Tag {
            key: "k".into(),
            value: "v".into(),
        }];
        s.overrides = serde_json::from_value(json!({"containerOverrides": [
            {"name": "sample-fargate-app", "command": ["echo", "hi"]}]}))
        .unwrap();
        let out = launch(e.svc.core(), s).unwrap().tasks;
        assert_eq!(out.len(), 2);
        assert_eq!(e.rt.started.lock().unwrap().len(), 2);
        for t in &out {
            assert_eq!(t.last_status, TaskStatus::Provisioning);
            assert_eq!(t.started_by.as_deref(), Some("me"));
            assert_eq!(t.group, "g");
            assert_eq!(t.tags[0].key, "k");
            assert_eq!(t.subnet_id, "subnet-9");
            assert_eq!(t.plan.cluster_name, "c");
            assert_eq!(t.plan.containers[0].command, vec!["echo", "hi"]);
            let c = &t.containers[0];
            assert_eq!(
                (c.cpu, c.memory, c.memory_reservation),
                (128, None, Some(64))
            );
            assert_eq!(
                t.overrides["containerOverrides"][0]["name"],
                "sample-fargate-app"
            );
            // Recorded, and in the read cache.
            let d = e.ok("DescribeTasks", json!({"cluster": "c", "tasks": [t.arn()]}));
            assert_eq!(d["tasks"][0]["group"], "g");
        }
        assert_ne!(out[0].plan.task_id, out[1].plan.task_id);
    }

    #[test]
    fn server_rules_still_apply_at_launch() {
        let e = setup();
        let core = e.svc.core();
        // 1.3.0 storage is at most 20 GiB.
        let mut s = spec(&e, "c");
        s.platform = Platform::V1_3_0;
        s.overrides =
            serde_json::from_value(json!({"ephemeralStorage": {"sizeInGiB": 30}})).unwrap();
        let err = launch(core, s).unwrap_err();
        assert_eq!(err.code(), "ClientException");
        // A cluster deleted after the spec was resolved.
        let s = spec(&e, "c");
        e.ok("DeleteCluster", json!({"cluster": "c"}));
        let err = launch(core, s).unwrap_err();
        assert_eq!(err.code(), "ClusterNotFoundException");
        assert!(e.rt.started.lock().unwrap().is_empty());
        assert!(
            core.store
                .scan::<TaskRecord>(db::TASKS, "")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn only_active_definitions_are_runnable() {
        let e = setup();
        let core = e.svc.core();
        let err = runnable_task_definition(core, "nope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "TaskDefinition not found: 'nope' names no registered task definition."
        );
        e.ok(
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "fargate-task-definition:1"}),
        );
        let err = runnable_task_definition(core, "fargate-task-definition:1").unwrap_err();
        assert_eq!(err.code(), "ClientException");
        assert!(err.to_string().ends_with(":1 was deregistered."), "{err}");
    }
}
