//! The AWS managed policies ferry knows: a small built-in set that roles
//! and users can attach (customer managed policies, CreatePolicy, are not
//! supported). Their documents are AWS's, restricted for `ReadOnlyAccess`
//! to the services ferry serves.

use std::sync::OnceLock;

use ferry_policy::Policy;

/// One AWS managed policy.
#[derive(Debug)]
pub struct Managed {
    /// The policy name, e.g. `ReadOnlyAccess`.
    pub name: &'static str,
    /// The ARN, e.g. `arn:aws:iam::aws:policy/ReadOnlyAccess`.
    pub arn: &'static str,
    /// The path, e.g. `/` or `/service-role/`.
    pub path: &'static str,
    /// The policy document.
    pub document: &'static str,
}

/// Everything, allowed.
const ADMINISTRATOR_ACCESS: &str = r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "*",
            "Resource": "*"
        }
    ]
}"#;

/// Read-only access to ferry's services, as AWS's `ReadOnlyAccess` grants
/// it for them: `Describe*`, `Get*` and `List*` (for Secrets Manager, the
/// metadata actions only: AWS's policy does not include GetSecretValue).
const READ_ONLY_ACCESS: &str = r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReadOnlyActions",
            "Effect": "Allow",
            "Action": [
                "ecs:Describe*",
                "ecs:List*",
                "elasticfilesystem:Describe*",
                "elasticfilesystem:List*",
                "iam:Get*",
                "iam:List*",
                "kms:Describe*",
                "kms:Get*",
                "kms:List*",
                "logs:Describe*",
                "logs:Get*",
                "logs:List*",
                "logs:FilterLogEvents",
                "logs:TestMetricFilter",
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetResourcePolicy",
                "secretsmanager:ListSecretVersionIds",
                "secretsmanager:ListSecrets",
                "ssm:Describe*",
                "ssm:Get*",
                "ssm:List*",
                "sts:GetCallerIdentity"
            ],
            "Resource": "*"
        }
    ]
}"#;

/// AWS's `AmazonECSTaskExecutionRolePolicy`, verbatim.
const ECS_TASK_EXECUTION_ROLE_POLICY: &str = r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ecr:GetAuthorizationToken",
                "ecr:BatchCheckLayerAvailability",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchGetImage",
                "logs:CreateLogStream",
                "logs:PutLogEvents"
            ],
            "Resource": "*"
        }
    ]
}"#;

/// The built-in set.
pub const MANAGED: &[Managed] = &[
    Managed {
        name: "AdministratorAccess",
        arn: "arn:aws:iam::aws:policy/AdministratorAccess",
        path: "/",
        document: ADMINISTRATOR_ACCESS,
    },
    Managed {
        name: "ReadOnlyAccess",
        arn: "arn:aws:iam::aws:policy/ReadOnlyAccess",
        path: "/",
        document: READ_ONLY_ACCESS,
    },
    Managed {
        name: "AmazonECSTaskExecutionRolePolicy",
        arn: "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
        path: "/service-role/",
        document: ECS_TASK_EXECUTION_ROLE_POLICY,
    },
];

/// The managed policy with `arn`.
pub fn find(arn: &str) -> Option<&'static Managed> {
    MANAGED.iter().find(|m| m.arn == arn)
}

/// The parsed document of a managed policy (parsed once).
pub fn parsed(arn: &str) -> Option<&'static Policy> {
    static PARSED: OnceLock<Vec<Option<Policy>>> = OnceLock::new();
    let all = PARSED.get_or_init(|| {
        MANAGED
            .iter()
            .map(|m| Policy::parse_identity(m.document).ok())
            .collect()
    });
    let i = MANAGED.iter().position(|m| m.arn == arn)?;
    all.get(i)?.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_document_parses() {
        for m in MANAGED {
            assert!(parsed(m.arn).is_some(), "{}", m.name);
            assert!(m.arn.ends_with(&format!("policy{}{}", m.path, m.name)));
        }
        assert!(find("arn:aws:iam::aws:policy/Nope").is_none());
    }
}
