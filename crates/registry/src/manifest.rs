//! What the registry reads from a manifest: its kind and the digests it
//! references. Anything else in it is the client's business.

use serde::Deserialize;

/// The manifest media types the registry stores.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether `mt` is a media type the registry stores.
pub fn supported(mt: &str) -> bool {
    matches!(mt, OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST)
}

/// Whether `mt` is an index (its references are manifests, not blobs).
pub fn is_index(mt: &str) -> bool {
    matches!(mt, OCI_INDEX | DOCKER_LIST)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Its media type.
    pub media_type: String,
    /// The config's media type.
    pub config_media_type: Option<String>,
    /// The blobs it references (config and layers), with their sizes.
    pub blobs: Vec<(String, u64)>,
    /// The manifests it references (an index).
    pub manifests: Vec<String>,
}

/// Parses `bytes` as a manifest; `declared` is the Content-Type the client
/// sent (or ECR's `imageManifestMediaType`), used when the manifest does
/// not say. `None` if it is not a manifest of a supported type.
pub fn parse(bytes: &[u8], declared: Option<&str>) -> Option<Parsed> {
    let w: Wire = serde_json::from_slice(bytes).ok()?;
    if w.schema_version != Some(2) {
        return None;
    }
    let media_type = match (w.media_type.as_deref(), declared) {
        (Some(m), _) => m.to_owned(),
        (None, Some(d)) if supported(d) => d.to_owned(),
        // An OCI manifest may omit mediaType: tell by its members.
        (None, _) if !w.manifests.is_empty() => OCI_INDEX.to_owned(),
        (None, _) => OCI_MANIFEST.to_owned(),
    };
    if !supported(&media_type) {
        return None;
    }
    if is_index(&media_type) {
        return Some(Parsed {
            media_type,
            config_media_type: None,
            blobs: Vec::new(),
            manifests: w.manifests.into_iter().map(|d| d.digest).collect(),
        });
    }
    let config = w.config?;
    let config_media_type = config.media_type.clone();
    let mut blobs = vec![(config.digest, config.size)];
    blobs.extend(w.layers.into_iter().map(|d| (d.digest, d.size)));
    Some(Parsed {
        media_type,
        config_media_type,
        blobs,
        manifests: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifests_and_indexes() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":3},"layers":[{"digest":"sha256:l","size":10}]}"#;
        let p = parse(m, None).unwrap();
        assert_eq!(p.media_type, OCI_MANIFEST);
        assert_eq!(
            p.blobs,
            vec![("sha256:c".into(), 3), ("sha256:l".into(), 10)]
        );
        let p = parse(m, Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(p.media_type, DOCKER_MANIFEST);
        let i = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:m","size":1}]}"#;
        let p = parse(i, None).unwrap();
        assert_eq!(p.manifests, vec!["sha256:m".to_owned()]);
        assert!(parse(b"{}", None).is_none());
        assert!(parse(br#"{"schemaVersion":1}"#, None).is_none());
        assert!(parse(b"not json", None).is_none());
    }
}
