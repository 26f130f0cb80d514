//! ECS ARNs: `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`,
//! `task-definition/FAMILY:REV`, `task/CLUSTER/ID`,
//! `container/CLUSTER/TASK_ID/UUID`.

/// Where ARNs are minted: the server's region and account.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// 12-digit account id.
    pub account: String,
}

impl Scope {
    fn prefix(&self) -> String {
        format!("arn:aws:ecs:{}:{}:", self.region, self.account)
    }

    /// A cluster's ARN.
    pub fn cluster(&self, name: &str) -> String {
        format!("{}cluster/{name}", self.prefix())
    }

    /// A task definition revision's ARN.
    pub fn task_definition(&self, family: &str, revision: u32) -> String {
        format!("{}task-definition/{family}:{revision}", self.prefix())
    }

    /// A task's ARN.
    pub fn task(&self, cluster: &str, id: &str) -> String {
        format!("{}task/{cluster}/{id}", self.prefix())
    }

    /// A service's ARN.
    pub fn service(&self, cluster: &str, name: &str) -> String {
        format!("{}service/{cluster}/{name}", self.prefix())
    }

    /// A capacity provider's ARN.
    pub fn capacity_provider(&self, name: &str) -> String {
        format!("{}capacity-provider/{name}", self.prefix())
    }

    /// A task attachment's ARN (an ENI's description names it).
    pub fn attachment(&self, id: &str) -> String {
        format!("{}attachment/{id}", self.prefix())
    }

    /// A container's ARN.
    pub fn container(&self, cluster: &str, task_id: &str, id: &str) -> String {
        format!("{}container/{cluster}/{task_id}/{id}", self.prefix())
    }
}

/// What an ECS ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `cluster/NAME`.
    Cluster(String),
    /// `task-definition/FAMILY:REV`.
    TaskDefinition {
        /// Family.
        family: String,
        /// Revision.
        revision: u32,
    },
    /// `task/CLUSTER/ID`.
    Task {
        /// Cluster name.
        cluster: String,
        /// Task id.
        id: String,
    },
}

/// Parses an ECS ARN; `None` if it is not one ferry mints.
pub fn parse(arn: &str) -> Option<Resource> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("ecs"), Some(_region), Some(_account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if let Some(name) = rest.strip_prefix("cluster/") {
        return (!name.is_empty() && !name.contains('/')).then(|| Resource::Cluster(name.into()));
    }
    if let Some(fr) = rest.strip_prefix("task-definition/") {
        let (family, rev) = fr.rsplit_once(':')?;
        let revision = rev.parse().ok()?;
        return Some(Resource::TaskDefinition {
            family: family.into(),
            revision,
        });
    }
    if let Some(ct) = rest.strip_prefix("task/") {
        let (cluster, id) = ct.split_once('/')?;
        if cluster.is_empty() || id.is_empty() || id.contains('/') {
            return None;
        }
        return Some(Resource::Task {
            cluster: cluster.into(),
            id: id.into(),
        });
    }
    None
}

/// The cluster name from a name or a cluster ARN.
pub fn cluster_name(name_or_arn: &str) -> Option<String> {
    if name_or_arn.starts_with("arn:") {
        match parse(name_or_arn)? {
            Resource::Cluster(n) => Some(n),
            _ => None,
        }
    } else {
        Some(name_or_arn.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = Scope {
            region: "us-east-1".into(),
            account: "000000000000".into(),
        };
        assert_eq!(
            parse(&s.cluster("default")),
            Some(Resource::Cluster("default".into()))
        );
        assert_eq!(
            parse(&s.task_definition("web", 3)),
            Some(Resource::TaskDefinition {
                family: "web".into(),
                revision: 3
            })
        );
        assert_eq!(
            parse(&s.task("c1", "0123456789abcdef0123456789abcdef")),
            Some(Resource::Task {
                cluster: "c1".into(),
                id: "0123456789abcdef0123456789abcdef".into()
            })
        );
        assert_eq!(parse("arn:aws:kms:us-east-1:0:key/x"), None);
        assert_eq!(parse("cluster/x"), None);
        assert_eq!(cluster_name("x").as_deref(), Some("x"));
        assert_eq!(cluster_name(&s.cluster("y")).as_deref(), Some("y"));
        assert_eq!(cluster_name(&s.task("c", "i")), None);
    }
}
