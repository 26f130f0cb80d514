//! One module per group of operations.

pub(crate) mod events;
pub(crate) mod groups;
pub(crate) mod streams;
