//! One module per group of operations.

pub(crate) mod events;
pub(crate) mod groups;
pub(crate) mod metrics;
pub(crate) mod queries;
pub(crate) mod read;
pub(crate) mod retention;
pub(crate) mod streams;
pub(crate) mod tags;
