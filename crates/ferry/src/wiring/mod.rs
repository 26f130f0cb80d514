//! Wiring: the adapters that connect the library crates inside
//! `ferry server`. Each is small; the logic lives in the crates.
//!
//! - [`keys`]: the agent's `KeyProvider` over the embedded KMS, called as
//!   the Fargate service principal, as Fargate does.

pub mod keys;
