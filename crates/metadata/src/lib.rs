//! ferry-metadata: the ECS task metadata endpoint (v4 and v3) for tasks,
//! as Fargate serves it at `http://169.254.170.2/v4/CONTAINER_ID`.
//!
//! Each task gets its own listener on 169.254.170.2:80 bound *inside* the
//! task's network namespace (the address is added to the namespace's `lo`),
//! so a container reaches its own task's endpoint and no other: in another
//! task's namespace the same address is that task's own listener, which
//! knows only its own container ids. The listeners are served from the
//! server process by hyper on a small runtime of their own.
//!
//! Module map:
//! - [`model`]: the JSON documents (AWS field names) and their inputs:
//!   [`model::TaskInfo`] (fixed when the network is up),
//!   [`model::TaskState`] (the control plane's view, asked per request),
//!   [`model::Observed`] (container start/exit times the host saw).
//! - [`stats`]: Docker's stats document from cgroups and `/proc/net/dev`.
//! - [`server`]: [`Endpoints`], the per-task listeners and the routes.
//! - [`credentials`]: the task role's credentials (`/v2/credentials/ID`)
//!   from a [`CredentialsSource`].

#![forbid(unsafe_code)]

pub mod credentials;
pub mod model;
pub mod server;
pub mod stats;

pub use credentials::{Credentials, CredentialsSource};
pub use model::{ContainerInfo, ControlContainer, ControlTask, NetworkInfo, TaskInfo, TaskState};
pub use server::{ADDRESS, Endpoints, MetadataError, OpenTask};

/// `ECS_CONTAINER_METADATA_URI_V4` of container `docker_id`.
pub fn uri_v4(docker_id: &str) -> String {
    format!("http://{ADDRESS}/v4/{docker_id}")
}

/// `ECS_CONTAINER_METADATA_URI` (v3) of container `docker_id`.
pub fn uri_v3(docker_id: &str) -> String {
    format!("http://{ADDRESS}/v3/{docker_id}")
}
