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
    /// `POST /access-points`.
    CreateAccessPoint,
    /// `GET /access-points`.
    DescribeAccessPoints,
    /// `DELETE /access-points/{AccessPointId}`.
    DeleteAccessPoint(String),
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
            Op::CreateAccessPoint => "CreateAccessPoint",
            Op::DescribeAccessPoints => "DescribeAccessPoints",
            Op::DeleteAccessPoint(_) => "DeleteAccessPoint",
            Op::TagResource(_) => "TagResource",
            Op::UntagResource(_) => "UntagResource",
            Op::ListTagsForResource(_) => "ListTagsForResource",
        }
    }

    /// The resource the path names, as (ARN resource type, id): a file
    /// system (`fs-...`) or an access point (`fsap-...`).
    pub fn resource(&self) -> Option<(&'static str, &str)> {
        let id = match self {
            Op::DeleteFileSystem(id)
            | Op::DeleteAccessPoint(id)
            | Op::TagResource(id)
            | Op::UntagResource(id)
            | Op::ListTagsForResource(id) => id,
            _ => return None,
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
    let (coll, id) = match rest.split_once('/') {
        Some((c, id)) => (c, Some(decode(id)?)),
        None => (rest, None),
    };
    Some(match (method.as_str(), coll, id) {
        ("POST", "file-systems", None) => Op::CreateFileSystem,
        ("GET", "file-systems", None) => Op::DescribeFileSystems,
        ("DELETE", "file-systems", Some(id)) => Op::DeleteFileSystem(id),
        ("POST", "access-points", None) => Op::CreateAccessPoint,
        ("GET", "access-points", None) => Op::DescribeAccessPoints,
        ("DELETE", "access-points", Some(id)) => Op::DeleteAccessPoint(id),
        ("POST", "resource-tags", Some(id)) => Op::TagResource(id),
        ("DELETE", "resource-tags", Some(id)) => Op::UntagResource(id),
        ("GET", "resource-tags", Some(id)) => Op::ListTagsForResource(id),
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
