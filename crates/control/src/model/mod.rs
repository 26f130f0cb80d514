//! Domain records, as kept in the store (JSON, so fields can be added with
//! `#[serde(default)]` without migrations).

pub mod cluster;
pub mod service;
pub mod task;
pub mod task_definition;
