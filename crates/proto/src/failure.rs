//! [`TaskFailure`]: why a task could not start, or what could not be
//! released, typed at the seams between the agent, the host storage and the
//! key service instead of passed around as preformatted strings.
//!
//! Its `Display` is the task's `stoppedReason`, in Fargate's words: the
//! error code where Fargate has one (`CannotPullContainerError: ...`), then
//! the detail.

use std::fmt;

/// Fargate's error codes at the head of a `stoppedReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// The image could not be found or pulled.
    CannotPullContainer,
    /// The task's storage, network, cgroup or host files could not be set up.
    ResourceInitialization,
    /// The OCI bundle or container could not be created.
    CannotCreateContainer,
    /// The container process could not be started.
    CannotStartContainer,
}

impl FailureCode {
    /// The code as Fargate writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CannotPullContainer => "CannotPullContainerError",
            Self::ResourceInitialization => "ResourceInitializationError",
            Self::CannotCreateContainer => "CannotCreateContainerError",
            Self::CannotStartContainer => "CannotStartContainerError",
        }
    }
}

/// Why a task failed to start (or a release failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// Fargate's code, when the failure has one.
    pub code: Option<FailureCode>,
    /// What happened, in words a user can act on. Never holds secrets.
    pub detail: String,
}

impl TaskFailure {
    /// A failure with Fargate's `code`.
    pub fn new(code: FailureCode, detail: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            detail: detail.into(),
        }
    }

    /// A failure without a code (invalid plans, internal faults).
    pub fn plain(detail: impl Into<String>) -> Self {
        Self {
            code: None,
            detail: detail.into(),
        }
    }

    /// The same failure with `context` put before its detail
    /// (`volume data: ...`).
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.detail = format!("{context}: {}", self.detail);
        self
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "{}: {}", c.as_str(), self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

impl std::error::Error for TaskFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_fargate_stopped_reasons() {
        let f = TaskFailure::new(FailureCode::CannotPullContainer, "image nope:1 not found");
        assert_eq!(
            f.to_string(),
            "CannotPullContainerError: image nope:1 not found"
        );
        assert_eq!(
            TaskFailure::plain("no containers").to_string(),
            "no containers"
        );
        let f =
            TaskFailure::new(FailureCode::ResourceInitialization, "disk full").context("volume");
        assert_eq!(
            f.to_string(),
            "ResourceInitializationError: volume: disk full"
        );
    }
}
