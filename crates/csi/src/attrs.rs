//! The volume attributes kubelet passes to NodePublishVolume for an
//! ephemeral inline volume, and the encryption context made from them.
//!
//! kubelet adds `csi.storage.k8s.io/ephemeral: "true"` for inline volumes
//! and, with the CSIDriver's `podInfoOnMount: true`, the pod's namespace,
//! name and uid; the pod spec's `volumeAttributes` add `size` and
//! `kmsKeyId`. Any other key is refused so a typo (`sise`) is an error,
//! not a silently default-sized volume.

use std::collections::{BTreeMap, HashMap};

use crate::quantity::{self, QuantityError};

/// `"true"` for a CSI ephemeral inline volume.
pub const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";
/// The pod's namespace (podInfoOnMount).
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
/// The pod's name (podInfoOnMount).
pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
/// The pod's uid (podInfoOnMount).
pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
/// Prefix of every key kubelet itself adds (service account name, tokens...).
const KUBELET_PREFIX: &str = "csi.storage.k8s.io/";
/// Volume size attribute (a Kubernetes quantity).
pub const SIZE: &str = "size";
/// KMS key (id, ARN, alias name or alias ARN) attribute.
pub const KMS_KEY_ID: &str = "kmsKeyId";
/// Size when the pod names none (as a Fargate task's default).
pub const DEFAULT_SIZE: u64 = 20 << 30;

/// Encryption-context keys (docs/csi.md).
pub mod context_keys {
    /// The pod's namespace.
    pub const NAMESPACE: &str = "k8s:namespace";
    /// The pod's name.
    pub const POD_NAME: &str = "k8s:podName";
    /// The pod's uid.
    pub const POD_UID: &str = "k8s:podUID";
    /// The node the plugin runs on (its `--node-id`).
    pub const NODE: &str = "ferry:node";
}

/// The pod a volume belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
}

/// What an ephemeral volume asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Size of the volume's data in bytes.
    pub size: u64,
    /// The KMS key the pod asked for, if any.
    pub kms_key_id: Option<String>,
    /// Its pod.
    pub pod: Pod,
}

/// Why a volume context was refused (all are the caller's to fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// Not an ephemeral inline volume.
    #[error(
        "only CSI ephemeral inline volumes are supported (volume context lacks {EPHEMERAL}=\"true\"); this driver has no controller to provision persistent volumes"
    )]
    NotEphemeral,
    /// A pod attribute is missing: the CSIDriver must set podInfoOnMount.
    #[error("volume context lacks {0} (the CSIDriver object must set podInfoOnMount: true)")]
    MissingPod(&'static str),
    /// The size attribute is wrong.
    #[error(transparent)]
    Size(#[from] QuantityError),
    /// kmsKeyId is empty or too long.
    #[error("kmsKeyId must be a KMS key id, key ARN, alias name or alias ARN (1-2048 characters)")]
    KeyId,
    /// An attribute this driver does not know.
    #[error("unknown volume attribute {0:?} (known: size, kmsKeyId)")]
    Unknown(String),
}

/// Parses a NodePublishVolume volume context.
pub fn parse(ctx: &HashMap<String, String>) -> Result<VolumeSpec, AttrError> {
    if ctx.get(EPHEMERAL).map(String::as_str) != Some("true") {
        return Err(AttrError::NotEphemeral);
    }
    if let Some(k) = ctx
        .keys()
        .find(|k| !k.starts_with(KUBELET_PREFIX) && *k != SIZE && *k != KMS_KEY_ID)
    {
        return Err(AttrError::Unknown(k.clone()));
    }
    let pod_attr = |k: &'static str| {
        ctx.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or(AttrError::MissingPod(k))
    };
    let pod = Pod {
        namespace: pod_attr(POD_NAMESPACE)?,
        name: pod_attr(POD_NAME)?,
        uid: pod_attr(POD_UID)?,
    };
    let size = match ctx.get(SIZE) {
        None => DEFAULT_SIZE,
        Some(s) => quantity::parse_volume_size(s)?,
    };
    let kms_key_id = match ctx.get(KMS_KEY_ID) {
        None => None,
        Some(k) if k.is_empty() || k.len() > 2048 => return Err(AttrError::KeyId),
        Some(k) => Some(k.clone()),
    };
    Ok(VolumeSpec {
        size,
        kms_key_id,
        pod,
    })
}

/// The encryption context a pod's data key is bound to (and its grant
/// constrained to): names the pod and the node, so the wrapped key in the
/// volume's token opens only for a caller that names them, and the audit
/// trail says whose volume each KMS call was for.
pub fn encryption_context(pod: &Pod, node_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (context_keys::NAMESPACE.into(), pod.namespace.clone()),
        (context_keys::POD_NAME.into(), pod.name.clone()),
        (context_keys::POD_UID.into(), pod.uid.clone()),
        (context_keys::NODE.into(), node_id.into()),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = [
            (EPHEMERAL, "true"),
            (POD_NAMESPACE, "ns"),
            (POD_NAME, "web-0"),
            (POD_UID, "u-1"),
            ("csi.storage.k8s.io/serviceAccount.name", "default"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    #[test]
    fn defaults_and_explicit_values() {
        let s = parse(&ctx(&[])).unwrap();
        assert_eq!(s.size, 20 << 30);
        assert_eq!(s.kms_key_id, None);
        assert_eq!(s.pod.name, "web-0");
        let s = parse(&ctx(&[("size", "5Gi"), ("kmsKeyId", "alias/team")])).unwrap();
        assert_eq!(s.size, 5 << 30);
        assert_eq!(s.kms_key_id.as_deref(), Some("alias/team"));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let mut c = ctx(&[]);
        c.remove(EPHEMERAL);
        assert_eq!(parse(&c), Err(AttrError::NotEphemeral));
        assert_eq!(
            parse(&ctx(&[(EPHEMERAL, "false")])),
            Err(AttrError::NotEphemeral)
        );
        let mut c = ctx(&[]);
        c.remove(POD_UID);
        assert_eq!(parse(&c), Err(AttrError::MissingPod(POD_UID)));
        assert!(matches!(
            parse(&ctx(&[("size", "500Gi")])),
            Err(AttrError::Size(QuantityError::Range(_)))
        ));
        assert!(matches!(
            parse(&ctx(&[("size", "big")])),
            Err(AttrError::Size(QuantityError::Syntax(_)))
        ));
        assert_eq!(
            parse(&ctx(&[("sise", "5Gi")])),
            Err(AttrError::Unknown("sise".into()))
        );
        assert_eq!(parse(&ctx(&[("kmsKeyId", "")])), Err(AttrError::KeyId));
    }

    #[test]
    fn context_names_pod_and_node() {
        let s = parse(&ctx(&[])).unwrap();
        let c = encryption_context(&s.pod, "node-a");
        assert_eq!(c.len(), 4);
        assert_eq!(c["k8s:namespace"], "ns");
        assert_eq!(c["k8s:podName"], "web-0");
        assert_eq!(c["k8s:podUID"], "u-1");
        assert_eq!(c["ferry:node"], "node-a");
    }
}
