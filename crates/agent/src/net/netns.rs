//! Named network namespaces, as `ip netns` makes them (a bind mount of the
//! namespace at `/run/netns/NAME`), so CNI plugins, runc and operators
//! (`ip netns exec`) all find them by path.

use std::path::PathBuf;
use std::process::Command;

/// Errors creating or deleting a namespace.
#[derive(Debug, thiserror::Error)]
#[error("ip netns {op} {name}: {why}")]
pub struct NetnsError {
    op: &'static str,
    name: String,
    why: String,
}

/// A named network namespace.
#[derive(Debug, Clone)]
pub struct Netns {
    /// Its name (`ferry-...`).
    pub name: String,
}

fn ip(op: &'static str, name: &str) -> Result<(), NetnsError> {
    let err = |why: String| NetnsError {
        op,
        name: name.to_string(),
        why,
    };
    let out = Command::new("ip")
        .args(["netns", op, name])
        .output()
        .map_err(|e| err(format!("running ip: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

impl Netns {
    /// Creates `/run/netns/NAME`.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        ip("add", name)?;
        Ok(Self {
            name: name.to_string(),
        })
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Deletes the namespace (idempotent).
    pub fn delete(&self) -> Result<(), NetnsError> {
        if !self.path().exists() {
            return Ok(());
        }
        ip("delete", &self.name)
    }
}
