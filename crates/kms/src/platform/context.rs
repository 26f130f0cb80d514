//! The encryption contexts the platform binds its data keys to. They are
//! part of the on-disk contract (the LUKS2 token records them, and a key
//! policy's `kms:EncryptionContext:*` conditions see them), so each is
//! written here once.

use std::collections::BTreeMap;

/// An encryption context: string pairs, ordered as KMS canonicalizes them.
pub type EncryptionContext = BTreeMap<String, String>;

const ACCOUNT: &str = "aws:ecs:clusterAccount";
const CLUSTER: &str = "aws:ecs:clusterName";

fn pairs<const N: usize>(p: [(&str, &str); N]) -> EncryptionContext {
    p.into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A task's ephemeral volume (docs/volume-format.md, "Token 0").
pub fn task_volume(account: &str, cluster: &str, task_arn: &str) -> EncryptionContext {
    pairs([
        (ACCOUNT, account),
        (CLUSTER, cluster),
        ("ferry:taskArn", task_arn),
    ])
}

/// A cluster's tasks: what Fargate's CreateCluster check asks a key for.
pub fn cluster(account: &str, cluster: &str) -> EncryptionContext {
    pairs([(ACCOUNT, account), (CLUSTER, cluster)])
}

/// An EFS-style file system's volume (docs/efs.md).
pub fn file_system(account: &str, fs_id: &str) -> EncryptionContext {
    pairs([
        (ACCOUNT, account),
        ("aws:elasticfilesystem:filesystem:id", fs_id),
    ])
}

/// The key that seals container logs at rest.
pub fn container_logs(account: &str) -> EncryptionContext {
    pairs([(ACCOUNT, account), ("ferry:purpose", "container-logs")])
}

/// The purpose that names the host's image store in its context (and in
/// the platform key's policy).
pub const IMAGE_STORE_PURPOSE: &str = "image-store";

/// Every blob of the host's image store (docs/images.md, "Keys").
pub fn image_store(account: &str) -> EncryptionContext {
    pairs([(ACCOUNT, account), ("ferry:purpose", IMAGE_STORE_PURPOSE)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_keep_the_documented_keys() {
        let t = task_volume("111122223333", "payments", "arn:aws:ecs:r:1:task/p/1");
        assert_eq!(
            t.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "aws:ecs:clusterAccount",
                "aws:ecs:clusterName",
                "ferry:taskArn"
            ]
        );
        assert_eq!(cluster("1", "c")["aws:ecs:clusterName"], "c");
        assert_eq!(
            file_system("1", "fs-1")["aws:elasticfilesystem:filesystem:id"],
            "fs-1"
        );
        assert_eq!(container_logs("1")["ferry:purpose"], "container-logs");
        assert_eq!(image_store("1")["ferry:purpose"], "image-store");
        assert_eq!(image_store("1")["aws:ecs:clusterAccount"], "1");
    }
}
