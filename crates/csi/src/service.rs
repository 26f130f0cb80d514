//! The gRPC face: CSI v1 Identity and Node services over a Unix socket,
//! turning requests into [`crate::node`] calls and errors into the codes
//! the CSI spec names.

use std::path::PathBuf;
use std::sync::Arc;

use ferry_api::client::kms::KmsError;
use tonic::{Code, Request, Response, Status};

use crate::attrs;
use crate::csi::v1 as pb;
use crate::node::{Node, NodeError, Publish};
use crate::record::Params;

/// The plugin's name (GetPluginInfo).
pub const PLUGIN_NAME: &str = "ephemeral.ferry.dev";

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let code = match &e {
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::AlreadyExists(_) => Code::AlreadyExists,
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::Aborted(_) => Code::Aborted,
            NodeError::Internal(_) => Code::Internal,
            NodeError::Kms { source, named_key } => kms_code(source, *named_key),
        };
        Status::new(code, e.to_string())
    }
}

/// A KMS failure as the CO should see it: a key the pod named that does
/// not exist or cannot be used is the pod's mistake (INVALID_ARGUMENT);
/// the same for the plugin's default key is the cluster's
/// (FAILED_PRECONDITION); a refusal is PERMISSION_DENIED; an unreachable
/// KMS is UNAVAILABLE (kubelet retries).
fn kms_code(e: &KmsError, named_key: bool) -> Code {
    use KmsError as K;
    match e {
        K::Service { code, .. } => match code.as_str() {
            "NotFoundException"
            | "InvalidArnException"
            | "DisabledException"
            | "KMSInvalidStateException"
            | "InvalidKeyUsageException" => {
                if named_key {
                    Code::InvalidArgument
                } else {
                    Code::FailedPrecondition
                }
            }
            "AccessDeniedException" => Code::PermissionDenied,
            "ThrottlingException"
            | "LimitExceededException"
            | "KMSInternalException"
            | "DependencyTimeoutException" => Code::Unavailable,
            _ => Code::Internal,
        },
        K::Transport { .. } => Code::Unavailable,
        K::Malformed { .. } | K::Endpoint(_) => Code::Internal,
    }
}

fn invalid(msg: &str) -> NodeError {
    NodeError::InvalidArgument(msg.into())
}

/// Checks a NodePublishVolumeRequest the way the spec orders it: missing
/// fields are INVALID_ARGUMENT, capabilities the plugin lacks are
/// FAILED_PRECONDITION, bad attributes INVALID_ARGUMENT.
pub fn validate_publish(r: &pb::NodePublishVolumeRequest) -> Result<Publish, NodeError> {
    use pb::volume_capability::AccessType;
    use pb::volume_capability::access_mode::Mode;
    if r.volume_id.is_empty() {
        return Err(invalid("volume_id is required"));
    }
    if r.target_path.is_empty() {
        return Err(invalid("target_path is required"));
    }
    let target = PathBuf::from(&r.target_path);
    if !target.is_absolute() {
        return Err(invalid("target_path must be absolute"));
    }
    let cap = r
        .volume_capability
        .as_ref()
        .ok_or_else(|| invalid("volume_capability is required"))?;
    let mode = cap
        .access_mode
        .as_ref()
        .ok_or_else(|| invalid("volume_capability.access_mode is required"))?;
    match Mode::try_from(mode.mode) {
        Ok(Mode::SingleNodeWriter | Mode::SingleNodeSingleWriter | Mode::SingleNodeMultiWriter) => {
        }
        Ok(Mode::SingleNodeReaderOnly) if r.readonly => {}
        Ok(m) => {
            return Err(NodeError::FailedPrecondition(format!(
                "access mode {} is not supported: an ephemeral volume belongs to one pod on one node",
                m.as_str_name()
            )));
        }
        Err(_) => return Err(invalid("unknown access mode")),
    }
    let mount = match &cap.access_type {
        Some(AccessType::Mount(m)) => m,
        Some(AccessType::Block(_)) => {
            return Err(NodeError::FailedPrecondition(
                "block access is not supported: volumes are published as ext4 file systems".into(),
            ));
        }
        None => return Err(invalid("volume_capability.access_type is required")),
    };
    if !(mount.fs_type.is_empty() || mount.fs_type == "ext4") {
        return Err(NodeError::FailedPrecondition(format!(
            "fs_type {:?} is not supported (ext4 only)",
            mount.fs_type
        )));
    }
    if !mount.mount_flags.is_empty() {
        return Err(NodeError::FailedPrecondition(
            "mount_flags are not supported".into(),
        ));
    }
    let mount_group = match mount.volume_mount_group.as_str() {
        "" => None,
        g => Some(
            g.parse::<u32>()
                .map_err(|_| invalid("volume_mount_group must be a numeric group id"))?,
        ),
    };
    let spec = attrs::parse(&r.volume_context).map_err(|e| invalid(&e.to_string()))?;
    Ok(Publish {
        volume_id: r.volume_id.clone(),
        target_path: target,
        params: Params {
            size: spec.size,
            kms_key_id: spec.kms_key_id,
            pod: spec.pod,
            read_only: r.readonly,
            mount_group,
        },
    })
}

/// Runs blocking node work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker: {e}")))?
        .map_err(Status::from)
}

/// Identity service.
#[derive(Debug)]
pub struct Identity;

#[tonic::async_trait]
impl pb::identity_server::Identity for Identity {
    async fn get_plugin_info(
        &self,
        _: Request<pb::GetPluginInfoRequest>,
    ) -> Result<Response<pb::GetPluginInfoResponse>, Status> {
        Ok(Response::new(pb::GetPluginInfoResponse {
            name: PLUGIN_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<pb::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<pb::GetPluginCapabilitiesResponse>, Status> {
        // A node-only plugin: no controller service, no topology.
        Ok(Response::new(pb::GetPluginCapabilitiesResponse {
            capabilities: vec![],
        }))
    }

    async fn probe(
        &self,
        _: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        // Serving starts only after recovery and the KMS identity check.
        Ok(Response::new(pb::ProbeResponse { ready: Some(true) }))
    }
}

/// Node service.
#[derive(Debug, Clone)]
pub struct NodeService {
    node: Arc<Node>,
}

impl NodeService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        NodeService { node }
    }
}

fn rpc_cap(t: pb::node_service_capability::rpc::Type) -> pb::NodeServiceCapability {
    pb::NodeServiceCapability {
        r#type: Some(pb::node_service_capability::Type::Rpc(
            pb::node_service_capability::Rpc { r#type: t as i32 },
        )),
    }
}

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn node_stage_volume(
        &self,
        _: Request<pb::NodeStageVolumeRequest>,
    ) -> Result<Response<pb::NodeStageVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "STAGE_UNSTAGE_VOLUME is not a capability of this plugin",
        ))
    }

    async fn node_unstage_volume(
        &self,
        _: Request<pb::NodeUnstageVolumeRequest>,
    ) -> Result<Response<pb::NodeUnstageVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "STAGE_UNSTAGE_VOLUME is not a capability of this plugin",
        ))
    }

    async fn node_publish_volume(
        &self,
        req: Request<pb::NodePublishVolumeRequest>,
    ) -> Result<Response<pb::NodePublishVolumeResponse>, Status> {
        let p = validate_publish(req.get_ref())?;
        let node = self.node.clone();
        let (id, pod) = (p.volume_id.clone(), crate::node::pod_label(&p.params.pod));
        let r = blocking(move || node.publish(&p)).await;
        match &r {
            Ok(()) => tracing::info!(volume = %id, pod = %pod, "published"),
            Err(e) => tracing::warn!(volume = %id, pod = %pod, "publish failed: {}", e.message()),
        }
        r.map(|()| Response::new(pb::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<pb::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<pb::NodeUnpublishVolumeResponse>, Status> {
        let r = req.into_inner();
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        if r.target_path.is_empty() {
            return Err(Status::invalid_argument("target_path is required"));
        }
        let node = self.node.clone();
        let id = r.volume_id.clone();
        let res =
            blocking(move || node.unpublish(&r.volume_id, std::path::Path::new(&r.target_path)))
                .await;
        match &res {
            Ok(()) => tracing::info!(volume = %id, "unpublished"),
            Err(e) => tracing::warn!(volume = %id, "unpublish failed: {}", e.message()),
        }
        res.map(|()| Response::new(pb::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<pb::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<pb::NodeGetVolumeStatsResponse>, Status> {
        let r = req.into_inner();
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        if r.volume_path.is_empty() {
            return Err(Status::invalid_argument("volume_path is required"));
        }
        let node = self.node.clone();
        let u = blocking(move || node.stats(&r.volume_id, std::path::Path::new(&r.volume_path)))
            .await?;
        use pb::volume_usage::Unit;
        let usage = |available: u64, total: u64, used: u64, unit: Unit| pb::VolumeUsage {
            available: available.try_into().unwrap_or(i64::MAX),
            total: total.try_into().unwrap_or(i64::MAX),
            used: used.try_into().unwrap_or(i64::MAX),
            unit: unit as i32,
        };
        Ok(Response::new(pb::NodeGetVolumeStatsResponse {
            usage: vec![
                usage(u.bytes_available, u.bytes_total, u.bytes_used, Unit::Bytes),
                usage(
                    u.inodes_available,
                    u.inodes_total,
                    u.inodes_used,
                    Unit::Inodes,
                ),
            ],
            volume_condition: None,
        }))
    }

    async fn node_expand_volume(
        &self,
        _: Request<pb::NodeExpandVolumeRequest>,
    ) -> Result<Response<pb::NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "EXPAND_VOLUME is not a capability of this plugin",
        ))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<pb::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<pb::NodeGetCapabilitiesResponse>, Status> {
        use pb::node_service_capability::rpc::Type;
        Ok(Response::new(pb::NodeGetCapabilitiesResponse {
            capabilities: vec![
                rpc_cap(Type::GetVolumeStats),
                rpc_cap(Type::VolumeMountGroup),
            ],
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<pb::NodeGetInfoRequest>,
    ) -> Result<Response<pb::NodeGetInfoResponse>, Status> {
        Ok(Response::new(pb::NodeGetInfoResponse {
            node_id: self.node.node_id().into(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pb::volume_capability::{
        AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
    };

    fn good() -> pb::NodePublishVolumeRequest {
        pb::NodePublishVolumeRequest {
            volume_id: "csi-1".into(),
            target_path: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/data/mount".into(),
            volume_capability: Some(pb::VolumeCapability {
                access_mode: Some(AccessMode {
                    mode: Mode::SingleNodeWriter as i32,
                }),
                access_type: Some(AccessType::Mount(MountVolume {
                    fs_type: String::new(),
                    mount_flags: vec![],
                    volume_mount_group: "2000".into(),
                })),
            }),
            volume_context: [
                (attrs::EPHEMERAL, "true"),
                (attrs::POD_NAMESPACE, "ns"),
                (attrs::POD_NAME, "p"),
                (attrs::POD_UID, "u"),
                ("size", "2Gi"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        }
    }

    fn code(r: pb::NodePublishVolumeRequest) -> Code {
        Status::from(validate_publish(&r).unwrap_err()).code()
    }

    #[test]
    fn a_good_request_validates() {
        let p = validate_publish(&good()).unwrap();
        assert_eq!(p.params.size, 2 << 30);
        assert_eq!(p.params.mount_group, Some(2000));
        assert!(!p.params.read_only);
    }

    #[test]
    fn bad_requests_get_the_spec_codes() {
        let mut r = good();
        r.volume_id.clear();
        assert_eq!(code(r), Code::InvalidArgument);
        let mut r = good();
        r.target_path.clear();
        assert_eq!(code(r), Code::InvalidArgument);
        let mut r = good();
        r.volume_capability = None;
        assert_eq!(code(r), Code::InvalidArgument);
        let mut r = good();
        r.volume_context.remove(attrs::EPHEMERAL);
        assert_eq!(code(r), Code::InvalidArgument);
        let mut r = good();
        r.volume_context.insert("size".into(), "0.5Gi".into());
        assert_eq!(code(r), Code::InvalidArgument);
        let mut r = good();
        if let Some(c) = r.volume_capability.as_mut() {
            c.access_type = Some(AccessType::Block(BlockVolume {}));
        }
        assert_eq!(code(r), Code::FailedPrecondition);
        let mut r = good();
        if let Some(c) = r.volume_capability.as_mut() {
            c.access_mode = Some(AccessMode {
                mode: Mode::MultiNodeMultiWriter as i32,
            });
        }
        assert_eq!(code(r), Code::FailedPrecondition);
        let mut r = good();
        if let Some(Some(AccessType::Mount(m))) =
            r.volume_capability.as_mut().map(|c| c.access_type.as_mut())
        {
            m.volume_mount_group = "staff".into();
        }
        assert_eq!(code(r), Code::InvalidArgument);
    }

    #[test]
    fn kms_errors_map_by_whose_key_it_is() {
        let e = |c: &str| KmsError::Service {
            op: "GenerateDataKeyWithoutPlaintext",
            code: c.into(),
            message: String::new(),
            status: 400,
        };
        assert_eq!(
            kms_code(&e("NotFoundException"), true),
            Code::InvalidArgument
        );
        assert_eq!(
            kms_code(&e("NotFoundException"), false),
            Code::FailedPrecondition
        );
        assert_eq!(
            kms_code(&e("AccessDeniedException"), true),
            Code::PermissionDenied
        );
        let t = KmsError::Transport {
            op: "Decrypt",
            endpoint: "x".into(),
            detail: "refused".into(),
        };
        assert_eq!(kms_code(&t, false), Code::Unavailable);
    }
}
