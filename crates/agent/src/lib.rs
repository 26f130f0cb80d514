//! ferry-agent: runs tasks.
//!
//! - [`plan`]: the boundary with the control plane: what to run
//!   ([`plan::TaskPlan`]), what happened ([`plan::TaskEvent`]), and the key
//!   provider the agent asks for a task volume's passphrase.
//! - [`image`]: the local image store (import, names, layers, unpacking).
pub mod image;
pub mod plan;
