//! ferry-agent: runs tasks.
//!
//! - [`plan`]: the boundary with the control plane: what to run
//!   ([`plan::TaskPlan`]), what happened ([`plan::TaskEvent`]), and the key
//!   provider the agent asks for a task volume's passphrase.
pub mod plan;
