//! Method + path + query to an EFS operation (paths from the botocore model).

use http::Method;

/// The API version prefix every EFS path starts with.
pub const PREFIX: &str = "/2015-02-01/";

/// One routed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    /// `POST /file-systems`.
    CreateFileSystem,
    /// `GET /file-systems`.
    DescribeFileSystems,
    /// `DELETE /file-systems/{FileSystemId}`.
    DeleteFileSystem(String),
    /// `PUT /file-systems/{FileSystemId}`.
    UpdateFileSystem(String),
    /// `PUT /file-systems/{FileSystemId}/protection`.
    UpdateFileSystemProtection(String),
    /// `PUT /file-systems/{FileSystemId}/policy`.
    PutFileSystemPolicy(String),
    /// `GET /file-systems/{FileSystemId}/policy`.
    DescribeFileSystemPolicy(String),
    /// `DELETE /file-systems/{FileSystemId}/policy`.
    DeleteFileSystemPolicy(String),
    /// `PUT /file-systems/{FileSystemId}/lifecycle-configuration`.
    PutLifecycleConfiguration(String),
    /// `GET /file-systems/{FileSystemId}/lifecycle-configuration`.
    DescribeLifecycleConfiguration(String),
    /// `PUT /file-systems/{FileSystemId}/backup-policy`.
    PutBackupPolicy(String),
    /// `GET /file-systems/{FileSystemId}/backup-policy`.
    DescribeBackupPolicy(String),
    /// `POST /access-points`.
    CreateAccessPoint,
    /// `GET /access-points`.
    DescribeAccessPoints,
    /// `DELETE /access-points/{AccessPointId}`.
    DeleteAccessPoint(String),
    /// `POST /mount-targets`.
    CreateMountTarget,
    /// `GET /mount-targets`.
    DescribeMountTargets,
    /// `DELETE /mount-targets/{MountTargetId}`.
    DeleteMountTarget(String),
    /// `GET /mount-targets/{MountTargetId}/security-groups`.
    DescribeMountTargetSecurityGroups(String),
    /// `PUT /mount-targets/{MountTargetId}/security-groups`.
    ModifyMountTargetSecurityGroups(String),
    /// `POST /create-tags/{FileSystemId}` (the older tag API).
    CreateTags(String),
    /// `POST /delete-tags/{FileSystemId}` (the older tag API).
    DeleteTags(String),
    /// `GET /tags/{FileSystemId}/` (the older tag API).
    DescribeTags(String),
    /// `POST /resource-tags/{ResourceId}`.
    TagResource(String),
    /// `DELETE /resource-tags/{ResourceId}`.
    UntagResource(String),
    /// `GET /resource-tags/{ResourceId}`.
    ListTagsForResource(String),
}

impl Op {
    /// The operation's name, which is also its IAM action name
    /// (`elasticfilesystem:NAME`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateFileSystem => "CreateFileSystem",
            Op::DescribeFileSystems => "DescribeFileSystems",
            Op::DeleteFileSystem(_) => "DeleteFileSystem",
            Op::UpdateFileSystem(_) => "UpdateFileSystem",
            Op::UpdateFileSystemProtection(_) => "UpdateFileSystemProtection",
            Op::PutFileSystemPolicy(_) => "PutFileSystemPolicy",
            Op::DescribeFileSystemPolicy(_) => "DescribeFileSystemPolicy",
            Op::DeleteFileSystemPolicy(_) => "DeleteFileSystemPolicy",
            Op::PutLifecycleConfiguration(_) => "PutLifecycleConfiguration",
            Op::DescribeLifecycleConfiguration(_) => "DescribeLifecycleConfiguration",
            Op::PutBackupPolicy(_) => "PutBackupPolicy",
            Op::DescribeBackupPolicy(_) => "DescribeBackupPolicy",
            Op::CreateAccessPoint => "CreateAccessPoint",
            Op::DescribeAccessPoints => "DescribeAccessPoints",
            Op::DeleteAccessPoint(_) => "DeleteAccessPoint",
            Op::CreateMountTarget => "CreateMountTarget",
            Op::DescribeMountTargets => "DescribeMountTargets",
            Op::DeleteMountTarget(_) => "DeleteMountTarget",
            Op::DescribeMountTargetSecurityGroups(_) => "DescribeMountTargetSecurityGroups",
            Op::ModifyMountTargetSecurityGroups(_) => "ModifyMountTargetSecurityGroups",
            Op::CreateTags(_) => "CreateTags",
            Op::DeleteTags(_) => "DeleteTags",
            Op::DescribeTags(_) => "DescribeTags",
            Op::TagResource(_) => "TagResource",
            Op::UntagResource(_) => "UntagResource",
            Op::ListTagsForResource(_) => "ListTagsForResource",
        }
    }

    /// The resource the path names, as (ARN resource type, id): a file
    /// system (`fs-...`), an access point (`fsap-...`) or a mount target
    /// (whose IAM resource is its file system's, found by the service).
    pub fn resource(&self) -> Option<(&'static str, &str)> {
        let id = match self {
            Op::CreateFileSystem
            | Op::DescribeFileSystems
            | Op::CreateAccessPoint
            | Op::DescribeAccessPoints
            | Op::CreateMountTarget
            | Op::DescribeMountTargets
            | Op::DeleteMountTarget(_)
            | Op::DescribeMountTargetSecurityGroups(_)
            | Op::ModifyMountTargetSecurityGroups(_) => return None,
            Op::DeleteFileSystem(id)
            | Op::UpdateFileSystem(id)
            | Op::UpdateFileSystemProtection(id)
            | Op::PutFileSystemPolicy(id)
            | Op::DescribeFileSystemPolicy(id)
            | Op::DeleteFileSystemPolicy(id)
            | Op::PutLifecycleConfiguration(id)
            | Op::DescribeLifecycleConfiguration(id)
            | Op::PutBackupPolicy(id)
            | Op::DescribeBackupPolicy(id)
            | Op::DeleteAccessPoint(id)
            | Op::CreateTags(id)
            | Op::DeleteTags(id)
            | Op::DescribeTags(id)
            | Op::TagResource(id)
            | Op::UntagResource(id)
            | Op::ListTagsForResource(id) => id,
        };
        let kind = if id.starts_with("fsap-") {
            "access-point"
        } else {
            "file-system"
        };
        Some((kind, id))
    }
}

/// Routes a request; None when no supported operation matches.
pub fn route(method: &Method, path: &str) -> Option<Op> {
    let rest = path.strip_prefix(PREFIX)?.trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').collect();
    let id = |i: usize| segs.get(i).and_then(|s| decode(s));
    Some(match (method.as_str(), segs.as_slice()) {
        ("POST", ["file-systems"]) => Op::CreateFileSystem,
        ("GET", ["file-systems"]) => Op::DescribeFileSystems,
        ("DELETE", ["file-systems", _]) => Op::DeleteFileSystem(id(1)?),
        ("PUT", ["file-systems", _]) => Op::UpdateFileSystem(id(1)?),
        ("PUT", ["file-systems", _, "protection"]) => Op::UpdateFileSystemProtection(id(1)?),
        ("PUT", ["file-systems", _, "policy"]) => Op::PutFileSystemPolicy(id(1)?),
        ("GET", ["file-systems", _, "policy"]) => Op::DescribeFileSystemPolicy(id(1)?),
        ("DELETE", ["file-systems", _, "policy"]) => Op::DeleteFileSystemPolicy(id(1)?),
        ("PUT", ["file-systems", _, "lifecycle-configuration"]) => {
            Op::PutLifecycleConfiguration(id(1)?)
        }
        ("GET", ["file-systems", _, "lifecycle-configuration"]) => {
            Op::DescribeLifecycleConfiguration(id(1)?)
        }
        ("PUT", ["file-systems", _, "backup-policy"]) => Op::PutBackupPolicy(id(1)?),
        ("GET", ["file-systems", _, "backup-policy"]) => Op::DescribeBackupPolicy(id(1)?),
        ("POST", ["access-points"]) => Op::CreateAccessPoint,
        ("GET", ["access-points"]) => Op::DescribeAccessPoints,
        ("DELETE", ["access-points", _]) => Op::DeleteAccessPoint(id(1)?),
        ("POST", ["mount-targets"]) => Op::CreateMountTarget,
        ("GET", ["mount-targets"]) => Op::DescribeMountTargets,
        ("DELETE", ["mount-targets", _]) => Op::DeleteMountTarget(id(1)?),
        ("GET", ["mount-targets", _, "security-groups"]) => {
            Op::DescribeMountTargetSecurityGroups(id(1)?)
        }
        ("PUT", ["mount-targets", _, "security-groups"]) => {
            Op::ModifyMountTargetSecurityGroups(id(1)?)
        }
        ("POST", ["create-tags", _]) => Op::CreateTags(id(1)?),
        ("POST", ["delete-tags", _]) => Op::DeleteTags(id(1)?),
        ("GET", ["tags", _]) => Op::DescribeTags(id(1)?),
        ("POST", ["resource-tags", _]) => Op::TagResource(id(1)?),
        ("DELETE", ["resource-tags", _]) => Op::UntagResource(id(1)?),
        ("GET", ["resource-tags", _]) => Op::ListTagsForResource(id(1)?),
        _ => return None,
    })
}

/// Percent-decodes one path segment (which must not contain `/` itself).
fn decode(seg: &str) -> Option<String> {
    if seg.contains('/') {
        return None;
    }
    let s: String = form_urlencoded::parse(format!("x={}", seg.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some(s)
}

/// The query parameters, decoded, in order.
pub fn query(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let m = |s: &str| Method::from_bytes(s.as_bytes()).unwrap_or(Method::GET);
        assert_eq!(
            route(&m("POST"), "/2015-02-01/file-systems"),
            Some(Op::CreateFileSystem)
        );
        assert_eq!(
            route(&m("DELETE"), "/2015-02-01/file-systems/fs-0123"),
            Some(Op::DeleteFileSystem("fs-0123".into()))
        );
        assert_eq!(
            route(&m("GET"), "/2015-02-01/resource-tags/fsap-1%3A2"),
            Some(Op::ListTagsForResource("fsap-1:2".into()))
        );
        assert_eq!(route(&m("PUT"), "/2015-02-01/file-systems"), None);
        assert_eq!(
            route(&m("PUT"), "/2015-02-01/file-systems/fs-1/policy"),
            Some(Op::PutFileSystemPolicy("fs-1".into()))
        );
        assert_eq!(
            route(&m("GET"), "/2015-02-01/tags/fs-1/"),
            Some(Op::DescribeTags("fs-1".into()))
        );
        assert_eq!(
            route(
                &m("PUT"),
                "/2015-02-01/mount-targets/fsmt-1/security-groups"
            ),
            Some(Op::ModifyMountTargetSecurityGroups("fsmt-1".into()))
        );
        assert_eq!(
            route(&m("GET"), "/2015-02-01/file-systems/fs-1/other"),
            None
        );
        assert_eq!(route(&m("GET"), "/2015-02-01/file-systems/a/b"), None);
        assert_eq!(route(&m("GET"), "/other"), None);
    }

    #[test]
    fn names_operations_and_their_resources() {
        let m = |s: &str| Method::from_bytes(s.as_bytes()).unwrap_or(Method::GET);
        let op = route(&m("POST"), "/2015-02-01/file-systems").unwrap();
        assert_eq!((op.name(), op.resource()), ("CreateFileSystem", None));
        let op = route(&m("DELETE"), "/2015-02-01/access-points/fsap-1").unwrap();
        assert_eq!(
            (op.name(), op.resource()),
            ("DeleteAccessPoint", Some(("access-point", "fsap-1")))
        );
        let op = route(&m("GET"), "/2015-02-01/resource-tags/fs-2").unwrap();
        assert_eq!(
            (op.name(), op.resource()),
            ("ListTagsForResource", Some(("file-system", "fs-2")))
        );
    }

    #[test]
    fn decodes_query() {
        assert_eq!(
            query("tagKeys=a&tagKeys=b%20c&MaxItems=2"),
            vec![
                ("tagKeys".into(), "a".into()),
                ("tagKeys".into(), "b c".into()),
                ("MaxItems".into(), "2".into())
            ]
        );
    }
}
