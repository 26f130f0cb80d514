//! ferry-control: the ECS control plane.
//!
//! Clusters, task definitions and tasks over the ECS JSON 1.1 API
//! (`AmazonEC2ContainerServiceV20141113.*`), with every record in
//! `ferry-store`. The control plane decides; a [`runtime::TaskRuntime`]
//! (the agent) executes [`ferry_proto::plan::TaskPlan`]s and reports
//! [`ferry_proto::plan::TaskEvent`]s back, which move a task through the
//! ECS state machine.
//!
//! Module map:
//! - [`admin`]: `FerryAdmin_20261201`, the operator's own operations
//!   (spot interruption), administrator only.
//! - [`agents`]: `FerryAgent_20261201`, how a remote `ferry agent` joins
//!   as a host (register, poll, events, logs) over the API.
//! - [`service`]: [`EcsService`], the `JsonService` the API server registers;
//!   dispatches operations, owns startup (default cluster, record upgrades,
//!   then reconciliation through [`tasks`]).
//! - [`ops`]: one module per ECS operation (or small group): its request
//!   and response wire types and its handler, which checks the request and
//!   calls the domain layer ([`tasks`], the store).
//! - [`wire`]: wire shapes shared by several operations (Cluster, Service,
//!   Task, TaskDefinition, NetworkConfiguration, Tag, Failure).
//! - [`model`]: the domain records kept in the store (cluster, task
//!   definition, task, service) and the task state machine.
//! - [`validate`]: Fargate's rules for task definitions and RunTask input,
//!   and the tag rules; turns wire requests into domain specs (parse,
//!   don't validate).
//! - [`plan`]: builds the agent's `TaskPlan` from a spec plus overrides.
//! - [`tasks`]: the task lifecycle: launch from a resolved
//!   [`tasks::LaunchSpec`], stop, runtime events, reconciliation after a
//!   restart, expiry of stopped tasks.
//! - [`scheduler`]: the service scheduler thread (desired counts, rolling
//!   deployments, backoff, service events); launches and stops through
//!   [`tasks`].
//! - [`capacity`]: the FARGATE and FARGATE_SPOT capacity providers,
//!   strategies and placement by base and weight.
//! - [`hosts`]: the hosts that run tasks (registration, heartbeat, lost
//!   hosts), placement on them by free CPU and memory, and each host's
//!   assignment loop.
//! - [`leader`]: the scheduler lease that elects the control plane's
//!   singletons, and the fence their writes check.
//! - [`runtime`]: the [`runtime::TaskRuntime`] trait the agent implements.
//! - [`networks`]: the [`networks::TaskNetworks`] trait: the VPC service
//!   that checks subnets and security groups and gives each task its ENI.
//! - [`keys`]: the [`keys::StorageKeys`] trait: KMS checks for cluster CMKs
//!   and the platform key.
//! - [`identity`]: the [`identity::TaskIdentity`] and
//!   [`identity::SecretSource`] traits (task and execution roles, container
//!   secrets), ECS's `valueFrom` grammar, and the task role sessions the
//!   metadata endpoint serves.
//! - [`db`]: store tables and key layout.
//! - [`task_cache`]: the in-memory read cache of task records (DescribeTasks).
//! - [`arn`]: ECS ARNs: building and parsing.
//! - [`paging`]: `nextToken` pagination.
//! - [`clock`]: wall-clock timestamps in the JSON 1.1 form.
//! - [`error`]: [`EcsError`], mapped to the ECS error shapes.

#![forbid(unsafe_code)]

pub mod admin;
pub mod agents;
pub mod arn;
pub mod capacity;
pub mod clock;
pub mod db;
pub mod error;
pub mod hosts;
pub mod identity;
pub mod keys;
pub mod leader;
pub mod model;
pub mod networks;
pub mod ops;
pub mod paging;
pub mod plan;
pub mod runtime;
pub mod scheduler;
pub mod service;
pub mod task_cache;
pub mod tasks;
pub mod validate;
pub mod wire;

pub use error::EcsError;
pub use service::{EcsConfig, EcsService};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_breadth;
#[cfg(test)]
mod tests_hosts;
