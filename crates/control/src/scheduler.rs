//! The service scheduler: a background thread that keeps every service at
//! its desired count. Each pass, per service:
//!
//! 1. accounts for its tracked tasks that STOPPED: a task that failed to
//!    start counts against its deployment (event with the reason, backoff
//!    0.5 s doubling up to 15 s; with the circuit breaker on, 10 failures
//!    fail the rollout); a task that reached RUNNING resets the backoff;
//!    tasks whose health turned UNHEALTHY are stopped to be replaced;
//! 2. stops tasks of old deployments: those not running at once, running
//!    ones only while at least `minimumHealthyPercent` of the desired count
//!    stays RUNNING; stops surplus PRIMARY tasks (scale down);
//! 3. starts PRIMARY tasks up to the desired count while the service's
//!    live (not STOPPED) tasks stay within `maximumPercent`;
//! 4. drops old deployments with no live task, marks the rollout
//!    COMPLETED and sends "has reached a steady state" once.
//!
//! Service tasks carry `group: service:NAME` and `startedBy: DEPLOYMENT_ID`;
//! the scheduler stops them with `ServiceSchedulerInitiated`. Passes are
//! serialized with the service API calls by [`Core::services_lock`]. Tasks
//! are launched and stopped through [`crate::tasks`], from a
//! [`LaunchSpec`] built from the service and its deployment.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ferry_proto::plan::HealthStatus;

use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::hosts;
use crate::leader::{self, Leader};
use crate::model::service::{Deployment, ServiceRecord};
use crate::model::task::{TaskRecord, TaskStatus, stop_code};
use crate::networks::AwsVpc;
use crate::service::Core;
use crate::tasks::{self, LaunchSpec, StorageKeyChoice};
use crate::validate;
use crate::wire::task::TaskOverride;

/// First backoff after a task fails to start, seconds.
const BACKOFF_BASE: f64 = 0.5;
/// Longest backoff, seconds.
const BACKOFF_MAX: f64 = 15.0;
/// Most tasks one launch starts (RunTask's `count` bound).
const MAX_PER_LAUNCH: u32 = 10;
/// Failed starts that trip the deployment circuit breaker.
const CIRCUIT_BREAKER_THRESHOLD: u32 = 10;

/// Runs passes every `interval` (or when woken) until `core` is dropped.
/// Each turn renews (or tries to take) the scheduler lease; only its
/// holder runs the pass and looks for lost hosts.
pub fn spawn(core: Weak<Core>, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("ecs-services".into())
        .spawn(move || {
            loop {
                let Some(c) = core.upgrade() else { return };
                if c.closing() {
                    return;
                }
                if let Some(leader) = leader::tick(&c) {
                    if let Err(e) = pass_as(&c, &leader) {
                        tracing::error!(error = %e, "service scheduler pass failed");
                    }
                    if c.local.lost_check_due(c.cfg.timings.lost_check_every)
                        && let Err(e) = hosts::check_lost(&c, &leader)
                    {
                        tracing::error!(error = %e, "looking for lost hosts failed");
                    }
                }
                c.wait_for_wake(interval);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the service scheduler thread");
    }
}

/// One pass over every service that is not INACTIVE, if this process holds
/// the scheduler lease (taken or renewed first when due).
pub fn pass(core: &Arc<Core>) -> Result<(), EcsError> {
    match leader::tick(core) {
        Some(leader) => pass_as(core, &leader),
        None => Ok(()),
    }
}

/// One pass as `leader`: every launch, stop and service record it writes
/// checks, in its transaction, that `leader` still holds the lease.
pub fn pass_as(core: &Arc<Core>, leader: &Leader) -> Result<(), EcsError> {
    let _serialized = core.services_lock();
    if core.closing() {
        return Ok(());
    }
    let all: Vec<(String, ServiceRecord)> = core.store.scan(db::SERVICES, "")?;
    for (key, rec) in all.into_iter().filter(|(_, s)| s.status != "INACTIVE") {
        let before = rec.clone();
        let mut rec = rec;
        schedule(core, &mut rec, leader)?;
        if serde_json::to_value(&rec).ok() != serde_json::to_value(&before).ok() {
            save(core, &key, &before, rec, leader)?;
        }
    }
    Ok(())
}

/// Writes what a pass made of a service. The record is read again in the
/// transaction: if an API call changed it since the pass read it (through
/// any replica), the pass's own changes are merged onto that version
/// ([`merge`]) instead of overwriting it.
fn save(
    core: &Core,
    key: &str,
    before: &ServiceRecord,
    after: ServiceRecord,
    leader: &Leader,
) -> Result<(), EcsError> {
    core.store.write(|w| {
        leader.check(w)?;
        let Some(fresh) = w.get::<ServiceRecord>(db::SERVICES, key)? else {
            return Ok::<_, EcsError>(());
        };
        let version = fresh.version;
        let mut out = if version == before.version {
            after
        } else {
            merge(before, &after, fresh)
        };
        out.version = version + 1;
        w.put(db::SERVICES, key, &out)?;
        Ok(())
    })
}

/// The pass's changes (`before` → `after`) applied to `fresh`, the record
/// an API call wrote meanwhile. The pass owns its events, the tasks it
/// tracks, the backoff, the steady-state flag and its deployments'
/// rollout state and failure counts; everything the user sets (desired
/// count, task definition, deployments made, configuration) is `fresh`'s.
/// A scheduler field the call changed too (UpdateService resets the
/// backoff) keeps the call's value.
pub fn merge(before: &ServiceRecord, after: &ServiceRecord, fresh: ServiceRecord) -> ServiceRecord {
    use std::collections::HashSet;
    let mut m = fresh;
    let seen: HashSet<&str> = before.events.iter().map(|e| e.id.as_str()).collect();
    let added: Vec<_> = after
        .events
        .iter()
        .filter(|e| !seen.contains(e.id.as_str()))
        .cloned()
        .collect();
    m.events.splice(0..0, added);
    m.events.truncate(crate::model::service::MAX_EVENTS);
    let was: HashSet<&str> = before.tracked.iter().map(String::as_str).collect();
    let now: HashSet<&str> = after.tracked.iter().map(String::as_str).collect();
    m.tracked
        .retain(|id| now.contains(id.as_str()) || !was.contains(id.as_str()));
    for id in &after.tracked {
        if !was.contains(id.as_str()) && !m.tracked.contains(id) {
            m.tracked.push(id.clone());
        }
    }
    // A new deployment starts without the old one's backoff.
    let redeployed = m.primary().map(|d| &d.id) != before.primary().map(|d| &d.id);
    if !redeployed && m.consecutive_failures == before.consecutive_failures {
        m.consecutive_failures = after.consecutive_failures;
    }
    if !redeployed && m.next_launch_at == before.next_launch_at {
        m.next_launch_at = after.next_launch_at;
    }
    if m.steady == before.steady {
        m.steady = after.steady;
    }
    let find = |r: &ServiceRecord, id: &str| r.deployments.iter().find(|d| d.id == id).cloned();
    for d in &mut m.deployments {
        let (Some(b), Some(a)) = (find(before, &d.id), find(after, &d.id)) else {
            continue;
        };
        if d.rollout_state == b.rollout_state && d.rollout_state_reason == b.rollout_state_reason {
            d.rollout_state = a.rollout_state;
            d.rollout_state_reason = a.rollout_state_reason;
        }
        if d.failed_tasks == b.failed_tasks {
            d.failed_tasks = a.failed_tasks;
        }
        d.updated_at = d.updated_at.max(a.updated_at);
    }
    // Deployments the pass dropped (old, no task left) stay dropped.
    m.deployments.retain(|d| {
        d.status == "PRIMARY" || find(after, &d.id).is_some() || find(before, &d.id).is_none()
    });
    if after.status == "INACTIVE" && m.status == "DRAINING" {
        m.status = "INACTIVE".into();
        m.deployments.clear();
    }
    m
}

fn ids(tasks: &[&TaskRecord]) -> String {
    tasks
        .iter()
        .map(|t| format!("(task {})", t.plan.task_id))
        .collect::<Vec<_>>()
        .join(" ")
}

fn schedule(core: &Arc<Core>, rec: &mut ServiceRecord, leader: &Leader) -> Result<(), EcsError> {
    let now = clock::now();
    let name = rec.name.clone();
    let primary_id = rec.primary().map(|d| d.id.clone()).unwrap_or_default();

    // 1. Tracked tasks that stopped or started.
    let mut still = Vec::new();
    for id in std::mem::take(&mut rec.tracked) {
        let t: Option<TaskRecord> = core
            .store
            .get(db::TASKS, &db::task_key(&rec.cluster_name, &id))?;
        let Some(t) = t else { continue };
        if t.last_status != TaskStatus::Stopped {
            if t.last_status == TaskStatus::Running && t.started_by.as_deref() == Some(&primary_id)
            {
                rec.consecutive_failures = 0;
            }
            still.push(id);
            continue;
        }
        // A task lost with its host is not the deployment's failure.
        if t.stop_code.as_deref() == Some(stop_code::TASK_FAILED_TO_START)
            && !hosts::lost_with_host(&t)
        {
            let reason = t.stopped_reason.clone().unwrap_or_default();
            rec.event(
                now,
                format!("(service {name}) failed to start a task: (task {id}) {reason}"),
            );
            fail(rec, t.started_by.as_deref(), now, &reason);
        }
    }
    rec.tracked = still;

    // 1b. Tasks whose essential containers failed their health checks are
    // replaced (ECS does this for service tasks only).
    let mut live = tasks::live_in_group(core, &rec.cluster_name, &rec.group())?;
    let unhealthy: Vec<String> = live
        .iter()
        .filter(|t| {
            t.desired_status == TaskStatus::Running && t.health_status() == HealthStatus::Unhealthy
        })
        .map(|t| t.plan.task_id.clone())
        .collect();
    for id in &unhealthy {
        tasks::stop_as(
            core,
            &rec.cluster_name,
            id,
            stop_code::SERVICE_SCHEDULER_INITIATED,
            "Task failed container health checks",
            leader,
        )?;
        rec.event(
            now,
            format!("(service {name}) (task {id}) failed container health checks."),
        );
        rec.steady = false;
    }
    if !unhealthy.is_empty() {
        // Their records now say desired STOPPED.
        live = tasks::live_in_group(core, &rec.cluster_name, &rec.group())?;
    }
    let wanted: Vec<&TaskRecord> = live
        .iter()
        .filter(|t| t.desired_status == TaskStatus::Running)
        .collect();
    // With a health check on an essential container, RUNNING is not enough.
    let healthy = wanted.iter().filter(|t| t.is_healthy_running()).count() as u32;
    let desired = rec.desired_count;
    let min_healthy = (desired * rec.minimum_healthy_percent).div_ceil(100);
    let max_live = (desired * rec.maximum_percent / 100).max(desired);

    // 2. Stops: old deployments, then surplus primary tasks. A task with
    // scale-in protection is skipped until its protection lapses, unless
    // the service is being deleted (an explicit request for every task).
    let (primary, old): (Vec<&TaskRecord>, Vec<&TaskRecord>) = wanted
        .iter()
        .partition(|t| t.started_by.as_deref() == Some(primary_id.as_str()));
    let deleting = rec.status == "DRAINING";
    let stoppable = |t: &&&TaskRecord| deleting || !t.protected_at(now);
    let mut to_stop: Vec<&TaskRecord> = old
        .iter()
        .filter(stoppable)
        .filter(|t| !t.is_healthy_running())
        .copied()
        .collect();
    let mut allowance = healthy.saturating_sub(min_healthy);
    for t in old
        .iter()
        .filter(stoppable)
        .filter(|t| t.is_healthy_running())
    {
        if allowance == 0 {
            break;
        }
        to_stop.push(t);
        allowance -= 1;
    }
    let surplus = (primary.len() as u32).saturating_sub(desired) as usize;
    let mut by_readiness: Vec<&TaskRecord> = primary.iter().filter(stoppable).copied().collect();
    by_readiness.sort_by_key(|t| t.is_healthy_running());
    to_stop.extend(by_readiness.iter().take(surplus));
    if !to_stop.is_empty() {
        for t in &to_stop {
            let dep = t.started_by.as_deref().unwrap_or("");
            tasks::stop_as(
                core,
                &rec.cluster_name,
                &t.plan.task_id,
                stop_code::SERVICE_SCHEDULER_INITIATED,
                &format!("Scaling activity initiated by (deployment {dep})"),
                leader,
            )?;
        }
        rec.event(
            now,
            format!(
                "(service {name}) has stopped {} running tasks: {}.",
                to_stop.len(),
                ids(&to_stop)
            ),
        );
        rec.steady = false;
    }

    // 3. Starts.
    let need = desired.saturating_sub(primary.len() as u32);
    let room = max_live.saturating_sub(live.len() as u32);
    let start = need.min(room);
    let tripped = rec.primary().is_none_or(|d| d.rollout_state == "FAILED");
    if start > 0
        && !tripped
        && now >= rec.next_launch_at
        && rec.status == "ACTIVE"
        && let Some(dep) = rec.primary().cloned()
    {
        rec.steady = false;
        match launch(core, rec, &dep, start, leader) {
            Ok(tasks::Launched {
                tasks: started,
                failures,
            }) => {
                if let Some(f) = failures.first() {
                    // No room on the host: not a failure of the deployment
                    // (the circuit breaker is for tasks that fail), but
                    // wait before trying again instead of spinning.
                    let detail = f.detail.as_deref().unwrap_or(&f.reason);
                    rec.event(
                        now,
                        format!("(service {name}) was unable to place a task. Reason: {detail}"),
                    );
                    rec.next_launch_at = now + BACKOFF_MAX;
                }
                if !started.is_empty() {
                    let refs: Vec<&TaskRecord> = started.iter().collect();
                    rec.event(
                        now,
                        format!(
                            "(service {name}) has started {} tasks: {}.",
                            started.len(),
                            ids(&refs)
                        ),
                    );
                }
                rec.tracked
                    .extend(started.iter().map(|t| t.plan.task_id.clone()));
            }
            // Not the lease's holder any more: nothing was launched, and
            // nothing of this pass is written.
            Err(e @ EcsError::NotLeader(_)) => return Err(e),
            Err(e) => {
                let reason = e.to_string();
                rec.event(
                    now,
                    format!("(service {name}) was unable to start tasks: {reason}"),
                );
                fail(rec, Some(&dep.id), now, &reason);
            }
        }
    }

    // 4. Old deployments, rollout state, steady state.
    let live_deps: Vec<String> = live.iter().filter_map(|t| t.started_by.clone()).collect();
    rec.deployments
        .retain(|d| d.status == "PRIMARY" || live_deps.contains(&d.id));
    let primary_running = primary.iter().filter(|t| t.is_healthy_running()).count() as u32;
    let settled =
        rec.deployments.len() == 1 && primary_running == desired && live.len() as u32 == desired;
    if let Some(d) = rec.deployments.iter_mut().find(|d| d.status == "PRIMARY")
        && settled
        && d.rollout_state == "IN_PROGRESS"
    {
        d.rollout_state = "COMPLETED".into();
        d.rollout_state_reason = "ECS deployment completed.".into();
        d.updated_at = now;
    }
    if settled && !rec.steady {
        rec.steady = true;
        rec.event(now, format!("(service {name}) has reached a steady state."));
    }
    if rec.status == "DRAINING" && live.is_empty() {
        rec.status = "INACTIVE".into();
        rec.deployments.clear();
        rec.event(now, format!("(service {name}) was deleted."));
    }
    Ok(())
}

/// Starts `count` tasks of the deployment `dep`. The checks are RunTask's,
/// in RunTask's order, so a service whose cluster or task definition went
/// away (or whose tags no longer fit) fails here with RunTask's error and
/// backs off.
fn launch(
    core: &Arc<Core>,
    rec: &ServiceRecord,
    dep: &Deployment,
    count: u32,
    leader: &Leader,
) -> Result<tasks::Launched, EcsError> {
    // A busy path, as RunTask: expire old stopped tasks.
    tasks::maybe_sweep(core);
    // RunTask's bound of 10 per call applies to a pass's launch too: a
    // larger step is started 10 at a time, one batch per pass (a step
    // asked for all at once would fail every pass and never start).
    let count = validate::check_count(Some(i64::from(count.min(MAX_PER_LAUNCH))))?;
    let cluster = core.active_cluster(Some(&rec.cluster_name))?;
    let td = tasks::runnable_task_definition(core, &dep.task_definition)?;
    let network = AwsVpc::parse(Some(&rec.network_configuration))?;
    let platform = validate::platform(Some(&dep.requested_platform))?;
    // Services record any propagateTags; only TASK_DEFINITION reaches tasks.
    let propagate = rec
        .propagate_tags
        .as_deref()
        .filter(|p| *p == "TASK_DEFINITION");
    let tags = validate::task_tags(&rec.tags, propagate, &td.tags)?;
    // Base and weight count the service's tasks that are to keep running.
    let mut placed = std::collections::BTreeMap::new();
    for t in tasks::live_in_group(core, &rec.cluster_name, &rec.group())? {
        if let (TaskStatus::Running, Some(p)) = (t.desired_status, t.capacity_provider_name) {
            *placed.entry(p).or_insert(0) += 1;
        }
    }
    tasks::launch(
        core,
        LaunchSpec {
            cluster,
            task_definition: td,
            count,
            overrides: TaskOverride::default(),
            platform,
            network,
            storage_key: StorageKeyChoice::Pinned(dep.kms_key_id.clone()),
            started_by: Some(dep.id.clone()),
            group: rec.group(),
            tags,
            placement: crate::capacity::Placement {
                strategy: rec.capacity_provider_strategy.clone(),
                placed,
            },
            leader: leader.clone(),
        },
    )
}

/// A task of deployment `dep` failed to start: backoff, count, maybe trip
/// the circuit breaker.
fn fail(rec: &mut ServiceRecord, dep: Option<&str>, now: f64, reason: &str) {
    rec.consecutive_failures += 1;
    let exp = rec.consecutive_failures.saturating_sub(1).min(10);
    rec.next_launch_at = now + (BACKOFF_BASE * f64::from(1u32 << exp)).min(BACKOFF_MAX);
    let cb = rec.circuit_breaker;
    if let Some(d) = rec
        .deployments
        .iter_mut()
        .find(|d| Some(d.id.as_str()) == dep)
    {
        d.failed_tasks += 1;
        d.updated_at = now;
        if cb && d.status == "PRIMARY" && d.failed_tasks >= CIRCUIT_BREAKER_THRESHOLD {
            d.rollout_state = "FAILED".into();
            d.rollout_state_reason =
                format!("ECS deployment circuit breaker: tasks failed to start. {reason}");
        }
    }
}
