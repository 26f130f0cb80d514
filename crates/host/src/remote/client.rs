//! The signed client of `FerryAgent_20261201` (JSON 1.1, signing name
//! `ecs`), with the agent's own key.

use std::time::Duration;

use ferry_api::client::{ClientError, SignedClient};
use ferry_api::sigv4::SigningCredentials;
use ferry_control::agents::TARGET_PREFIX;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A call that failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The control plane answered with an error.
    #[error("{op}: {code}: {message}")]
    Refused {
        /// The operation.
        op: &'static str,
        /// The AWS error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// No answer.
    #[error("{op}: cannot reach {endpoint}: {detail}")]
    Transport {
        /// The operation.
        op: &'static str,
        /// The server's URL.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// An answer that is not the protocol's.
    #[error("{op}: malformed response: {detail}")]
    Malformed {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The `--server` URL is unusable.
    #[error("bad --server URL {0:?}: expected http://HOST:PORT or https://HOST[:PORT]")]
    Endpoint(String),
}

impl CallError {
    /// The AWS error code, if the control plane sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The agent's client of the control plane.
#[derive(Debug)]
pub struct AgentClient {
    http: SignedClient,
    name: String,
}

impl AgentClient {
    /// A client of the replicas at `endpoints` (any answers any call:
    /// one that cannot be reached is passed over), signing with `creds`
    /// for `region`, as host `name`.
    pub fn new(
        endpoints: &[&str],
        region: &str,
        creds: SigningCredentials,
        name: &str,
    ) -> Result<Self, CallError> {
        let http = SignedClient::new_any(endpoints, region, creds, Duration::from_secs(30))
            .map_err(|e| match e {
                ClientError::Endpoint(url) => CallError::Endpoint(url),
                other => CallError::Endpoint(other.to_string()),
            })?;
        Ok(Self {
            http,
            name: name.to_owned(),
        })
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One call: `op` with `req`, its JSON answer.
    pub fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        op: &'static str,
        req: &Q,
    ) -> Result<R, CallError> {
        let body = serde_json::to_vec(req).map_err(|e| CallError::Malformed {
            op,
            detail: format!("encoding the request: {e}"),
        })?;
        let headers = [
            ("content-type", "application/x-amz-json-1.1".to_owned()),
            ("x-amz-target", format!("{TARGET_PREFIX}.{op}")),
        ];
        let (status, bytes) = self.http.post("ecs", &headers, body).map_err(|e| match e {
            ClientError::Endpoint(url) => CallError::Endpoint(url),
            ClientError::Transport { endpoint, detail } => CallError::Transport {
                op,
                endpoint,
                detail,
            },
        })?;
        if status == 200 {
            return serde_json::from_slice(&bytes).map_err(|e| CallError::Malformed {
                op,
                detail: e.to_string(),
            });
        }
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| CallError::Malformed {
                op,
                detail: format!("HTTP {status}, not JSON: {e}"),
            })?;
        let (code, message) = ferry_api::client::aws_error(&v)
            .filter(|(code, _)| !code.is_empty())
            .unwrap_or_else(|| (format!("HTTP {status}"), String::new()));
        Err(CallError::Refused { op, code, message })
    }
}
