//! A file system's settings: throughput (UpdateFileSystem), replication
//! overwrite protection, the file-system policy, lifecycle and backup
//! policies. Only the policy changes what tasks may do (see
//! [`crate::client_access`]); the others are recorded and echoed, since
//! ferry has one storage class, no backup service and no replication
//! (docs/efs.md).

use ferry_proto::RequestContext;
use serde_json::{Value, json};

use super::{EfsService, R, bad, ok, opt_str};
use crate::error::EfsError;

/// `ProvisionedThroughputInMibps`: required (≥ 1) with `provisioned`,
/// refused with other modes.
pub(super) fn provisioned_throughput(b: &Value, mode: &str) -> Result<Option<f64>, EfsError> {
    let v = match b.get("ProvisionedThroughputInMibps") {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_f64()
                .ok_or_else(|| bad("ProvisionedThroughputInMibps must be a number"))?,
        ),
    };
    match (mode, v) {
        ("provisioned", None) => Err(bad(
            "ProvisionedThroughputInMibps is required when ThroughputMode is provisioned",
        )),
        ("provisioned", Some(t)) if !(1.0..=10240.0).contains(&t) => Err(bad(
            "ProvisionedThroughputInMibps must be between 1 and 10240",
        )),
        ("provisioned", Some(t)) => Ok(Some(t)),
        (_, Some(_)) => Err(bad(
            "ProvisionedThroughputInMibps can be set only when ThroughputMode is provisioned",
        )),
        (_, None) => Ok(None),
    }
}

/// The day counts `TransitionToIA` and `TransitionToArchive` accept (the
/// model's `TransitionToIARules` and `TransitionToArchiveRules`, the same
/// values).
const AFTER_DAYS: &[&str] = &[
    "AFTER_1_DAY",
    "AFTER_7_DAYS",
    "AFTER_14_DAYS",
    "AFTER_30_DAYS",
    "AFTER_60_DAYS",
    "AFTER_90_DAYS",
    "AFTER_180_DAYS",
    "AFTER_270_DAYS",
    "AFTER_365_DAYS",
];

/// The lifecycle rules each `LifecyclePolicy` member accepts.
const TRANSITIONS: [(&str, &[&str]); 3] = [
    ("TransitionToIA", AFTER_DAYS),
    ("TransitionToPrimaryStorageClass", &["AFTER_1_ACCESS"]),
    ("TransitionToArchive", AFTER_DAYS),
];

/// `LifecyclePolicies`: each entry one transition with a valid rule, each
/// transition at most once (as EFS requires).
fn lifecycle_policies(b: &Value) -> Result<Vec<Value>, EfsError> {
    let Some(Value::Array(list)) = b.get("LifecyclePolicies") else {
        return Err(bad("LifecyclePolicies is required and must be a list"));
    };
    let mut seen = Vec::new();
    for p in list {
        let Some(obj) = p.as_object().filter(|o| o.len() == 1) else {
            return Err(bad(
                "each LifecyclePolicy must have exactly one of TransitionToIA, TransitionToPrimaryStorageClass or TransitionToArchive",
            ));
        };
        for (k, v) in obj {
            let Some((_, rules)) = TRANSITIONS.iter().find(|(n, _)| n == k) else {
                return Err(bad(format!("unknown lifecycle transition {k:?}")));
            };
            let rule = v.as_str().unwrap_or_default();
            if !rules.contains(&rule) {
                return Err(bad(format!(
                    "{k} must be one of {}; got {v}",
                    rules.join(", ")
                )));
            }
            if seen.contains(k) {
                return Err(bad(format!("{k} is given more than once")));
            }
            seen.push(k.clone());
        }
    }
    Ok(list.clone())
}

impl EfsService {
    pub(super) fn update_file_system(&self, id: &str, b: &Value) -> R {
        let mode = opt_str(b, "ThroughputMode")?;
        if let Some(m) = mode
            && !matches!(m, "bursting" | "provisioned" | "elastic")
        {
            return Err(bad(format!("invalid ThroughputMode {m:?}")));
        }
        let (fs, ()) = self.update_fs(id, |fs| {
            let mode = mode.unwrap_or(&fs.throughput_mode).to_owned();
            let t = if b.get("ProvisionedThroughputInMibps").is_none() && mode == fs.throughput_mode
            {
                fs.provisioned_throughput
            } else {
                provisioned_throughput(b, &mode)?
            };
            fs.throughput_mode = mode;
            fs.provisioned_throughput = t;
            Ok(())
        })?;
        ok(202, self.describe_fs(&fs)?)
    }

    pub(super) fn update_protection(&self, id: &str, b: &Value) -> R {
        let v = opt_str(b, "ReplicationOverwriteProtection")?;
        if let Some(v) = v
            && !matches!(v, "ENABLED" | "DISABLED")
        {
            // REPLICATING is a state EFS sets, not one a caller asks for.
            return Err(bad(format!(
                "ReplicationOverwriteProtection must be ENABLED or DISABLED; got {v:?}"
            )));
        }
        let (fs, ()) = self.update_fs(id, |fs| {
            if let Some(v) = v {
                fs.overwrite_protection = v.to_owned();
            }
            Ok(())
        })?;
        ok(
            200,
            json!({"ReplicationOverwriteProtection": fs.overwrite_protection}),
        )
    }

    pub(super) fn put_policy(&self, ctx: &RequestContext, id: &str, b: &Value) -> R {
        let text = match b.get("Policy") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 20_000 => s.clone(),
            _ => return Err(bad("Policy is required (1 to 20000 characters of JSON)")),
        };
        let bypass = match b.get("BypassPolicyLockoutSafetyCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(v)) => *v,
            Some(_) => return Err(bad("BypassPolicyLockoutSafetyCheck must be a boolean")),
        };
        let policy = ferry_policy::Policy::parse(&text)
            .map_err(|e| EfsError::InvalidPolicy(format!("Policy is invalid: {}", e.0)))?;
        let fs = self.fs_or_404(id)?;
        // EFS's lockout check: the caller must still be allowed to change
        // the policy afterwards (only an explicit deny can stop them here).
        if !bypass {
            let check =
                ferry_proto::authz::Check::new("elasticfilesystem:PutFileSystemPolicy", &fs.arn);
            let d = ferry_proto::authz::decisions(&ctx.caller, &check, Some(&policy));
            if d.resource.decision == ferry_policy::Decision::Deny {
                return Err(EfsError::InvalidPolicy(
                    "The policy would prevent the principal making this request from making future PutFileSystemPolicy requests on this file system. Set BypassPolicyLockoutSafetyCheck to true to override.".into(),
                ));
            }
        }
        self.update_fs(id, |fs| {
            fs.policy = Some(text.clone());
            Ok(())
        })?;
        ok(200, json!({"FileSystemId": id, "Policy": text}))
    }

    pub(super) fn describe_policy(&self, id: &str) -> R {
        let fs = self.fs_or_404(id)?;
        match fs.policy {
            Some(p) => ok(200, json!({"FileSystemId": id, "Policy": p})),
            None => Err(EfsError::PolicyNotFound(format!(
                "File system '{id}' does not have a file system policy (the default policy is in effect)."
            ))),
        }
    }

    pub(super) fn delete_policy(&self, id: &str) -> R {
        self.update_fs(id, |fs| {
            fs.policy = None;
            Ok(())
        })?;
        ok(200, Value::Null)
    }

    pub(super) fn put_lifecycle(&self, id: &str, b: &Value) -> R {
        let policies = lifecycle_policies(b)?;
        self.update_fs(id, |fs| {
            fs.lifecycle_policies = policies.clone();
            Ok(())
        })?;
        ok(200, json!({"LifecyclePolicies": policies}))
    }

    pub(super) fn describe_lifecycle(&self, id: &str) -> R {
        let fs = self.fs_or_404(id)?;
        ok(200, json!({"LifecyclePolicies": fs.lifecycle_policies}))
    }

    pub(super) fn put_backup_policy(&self, id: &str, b: &Value) -> R {
        let status = b
            .get("BackupPolicy")
            .and_then(|p| p.get("Status"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("BackupPolicy.Status is required"))?;
        if !matches!(status, "ENABLED" | "DISABLED") {
            // ENABLING/DISABLING are transitions EFS reports, not requests.
            return Err(EfsError::Validation(format!(
                "BackupPolicy.Status must be ENABLED or DISABLED; got {status:?}"
            )));
        }
        self.update_fs(id, |fs| {
            fs.backup_status = status.to_owned();
            Ok(())
        })?;
        ok(200, json!({"BackupPolicy": {"Status": status}}))
    }

    pub(super) fn describe_backup_policy(&self, id: &str) -> R {
        let fs = self.fs_or_404(id)?;
        ok(200, json!({"BackupPolicy": {"Status": fs.backup_status}}))
    }
}
