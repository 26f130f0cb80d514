//! Store layout. One redb table per record kind, JSON values:
//!
//! | table           | key                          | value            |
//! |-----------------|------------------------------|------------------|
//! | `ecs_meta`      | `initialized`                | `true`           |
//! | `ecs_meta`      | `container_sizes`            | `true`           |
//! | `ecs_meta`      | `container_secrets`          | `true`           |
//! | `ecs_clusters`  | cluster name                 | `ClusterRecord`  |
//! | `ecs_families`  | family                       | `FamilyRecord`   |
//! | `ecs_taskdefs`  | `FAMILY:REVISION` (10 digits) | `TaskDefRecord`  |
//! | `ecs_tasks`     | `CLUSTER/TASK_ID`            | `TaskRecord`     |
//! | `ecs_services`  | `CLUSTER/NAME`               | `ServiceRecord`  |
//! | `ecs_hosts`     | host name                    | `HostRecord`     |
//! | `ecs_placements`| `HOST/CLUSTER/TASK_ID`       | `Reservation`    |
//!
//! Zero-padded revisions make a prefix scan return a family's revisions in
//! order; `CLUSTER/` prefixes list a cluster's tasks.

/// Server-level markers.
pub const META: &str = "ecs_meta";
/// Marker in [`META`]: task definitions carry their container sizes
/// (records from before were upgraded from their documents).
pub const CONTAINER_SIZES: &str = "container_sizes";
/// Marker in [`META`]: task definitions carry their containers' `secrets`
/// (records from before were upgraded from their documents).
pub const CONTAINER_SECRETS: &str = "container_secrets";
/// Clusters.
pub const CLUSTERS: &str = "ecs_clusters";
/// Families.
pub const FAMILIES: &str = "ecs_families";
/// Task definition revisions.
pub const TASKDEFS: &str = "ecs_taskdefs";
/// Tasks.
pub const TASKS: &str = "ecs_tasks";

/// The key of a task definition revision.
pub fn taskdef_key(family: &str, revision: u32) -> String {
    format!("{family}:{revision:010}")
}

/// The scan prefix of a family's revisions.
pub fn taskdef_prefix(family: &str) -> String {
    format!("{family}:")
}

/// The key of a task.
pub fn task_key(cluster: &str, task_id: &str) -> String {
    format!("{cluster}/{task_id}")
}

/// The scan prefix of a cluster's tasks.
pub fn task_prefix(cluster: &str) -> String {
    format!("{cluster}/")
}

/// Services (`CLUSTER/NAME`).
pub const SERVICES: &str = "ecs_services";

/// The key of a service.
pub fn service_key(cluster: &str, name: &str) -> String {
    format!("{cluster}/{name}")
}

/// Hosts (`NAME`): each host's registration (`HostRecord`), written when
/// its process starts; its liveness is the lease `host/NAME`.
pub const HOSTS: &str = "ecs_hosts";

/// What each host's unfinished tasks hold (`HOST/CLUSTER/TASK_ID` →
/// `Reservation`): written in the transaction that records a task,
/// deleted in the one that records it STOPPED. Placement sums a host's
/// rows instead of decoding every task record, and a host finds the tasks
/// assigned to it with one prefix scan.
pub const PLACEMENTS: &str = "ecs_placements";

/// The key of a task's reservation on `host`.
pub fn placement_key(host: &str, task_key: &str) -> String {
    format!("{host}/{task_key}")
}

/// The scan prefix of a host's reservations (host names have no `/`).
pub fn placement_prefix(host: &str) -> String {
    format!("{host}/")
}
