//! ferry-csi: a CSI v1 node plugin giving Kubernetes pods encrypted
//! ephemeral inline volumes: one LUKS2 volume per pod, in the same format
//! and with the same `ferry-kms` token as ferry's task volumes, keyed by a
//! data key from a ferry KMS under the pod's encryption context, and
//! crypto-shredded when the pod goes. See docs/csi.md.
//!
//! Modules:
//! - [`quantity`]: Kubernetes quantities (`20Gi`) → volume sizes.
//! - [`attrs`]: the volume context kubelet passes; the encryption context.
//! - the plugin's KMS client (SigV4; GenerateDataKeyWithoutPlaintext,
//!   CreateGrant, Decrypt, RetireGrant, STS identity) is
//!   [`ferry_api::client::kms`], shared with a remote host's storage keys.
//! - [`record`]: per-volume records (ids and ARNs, nothing secret).
//! - [`node`]: publish, unpublish, stats, recovery after a restart.
//! - [`service`]: the gRPC Identity and Node services.

pub mod attrs;
pub mod node;
pub mod quantity;
pub mod record;
pub mod service;

/// Code generated from `proto/csi.proto` (the CSI spec v1.12.0).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod csi {
    /// `csi.v1`.
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use node::{Config, Node};

/// Errors starting the plugin's listener.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The endpoint is not `unix:///PATH`.
    #[error("endpoint {0:?} must be unix:///ABSOLUTE/PATH")]
    Endpoint(String),
    /// Binding the socket failed.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The socket path of a `unix:///PATH` endpoint (also `unix:/PATH`, as
/// some sidecars write it).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    let p = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .ok_or_else(|| ServeError::Endpoint(endpoint.into()))?;
    let p = Path::new(p);
    if !p.is_absolute() {
        return Err(ServeError::Endpoint(endpoint.into()));
    }
    Ok(p.to_path_buf())
}

/// Serves the Identity and Node services on the Unix socket `socket`
/// until `shutdown` resolves. A stale socket file from an earlier run is
/// replaced.
pub async fn serve(
    node: Arc<Node>,
    socket: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    use csi::v1::{identity_server::IdentityServer, node_server::NodeServer};
    let bind = |source| ServeError::Bind {
        path: socket.to_path_buf(),
        source,
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(bind)?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(bind(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(socket).map_err(bind)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(service::Identity))
        .add_service(NodeServer::new(service::NodeService::new(node)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        for bad in ["/csi/csi.sock", "unix://csi.sock", "tcp://127.0.0.1:1"] {
            assert!(socket_path(bad).is_err(), "{bad}");
        }
    }
}
