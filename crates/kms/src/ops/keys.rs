//! CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
//! ScheduleKeyDeletion, CancelKeyDeletion.

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};

use super::{KeyMetadata, authorize, authorize_account_op, check_grant_tokens, refuse_aws_managed};
use crate::error::KmsError;
use crate::keystore::{KeyStore, Names};
use crate::model::{KeyRecord, KeyState, Tag, now};
use crate::params::{Params, page, paged};
use crate::policy::Policy;
use crate::service::{Kms, Operation, Trail};

const DAY: f64 = 86_400.0;

/// The default key policy, as AWS writes it: the account may do anything
/// (in ferry: the account's administrator).
pub fn default_policy(account: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    }))
    .unwrap_or_default()
}

/// Parses and validates `Tags`.
pub fn parse_tags(p: &Params<'_>) -> Result<Vec<Tag>, AwsError> {
    let mut out: Vec<Tag> = Vec::new();
    let given = p.opt_objects("Tags")?.unwrap_or_default();
    // No request may carry more tags than a key can hold.
    if given.len() > super::tags::MAX_TAGS {
        return Err(AwsError::client(
            "LimitExceededException",
            format!("A key can have at most {} tags.", super::tags::MAX_TAGS),
        ));
    }
    for t in given {
        let key = t.str("TagKey", 1, 128)?;
        let value = t.str("TagValue", 0, 256)?;
        if key.starts_with("aws:") {
            return Err(AwsError::client(
                "TagException",
                "Tag keys beginning with aws: are reserved.",
            ));
        }
        if let Some(prev) = out.iter_mut().find(|x| x.key == key) {
            prev.value = value.to_owned();
        } else {
            out.push(Tag {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
    }
    Ok(out)
}

pub fn create_key(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let description = p.opt_str("Description", 0, 8192)?.unwrap_or("");
    let usage = p.opt_enum(
        "KeyUsage",
        &[
            "SIGN_VERIFY",
            "ENCRYPT_DECRYPT",
            "GENERATE_VERIFY_MAC",
            "KEY_AGREEMENT",
        ],
    )?;
    let spec = p
        .opt_str("KeySpec", 1, 64)?
        .or(p.opt_str("CustomerMasterKeySpec", 1, 64)?);
    if let Some(u) = usage
        && u != "ENCRYPT_DECRYPT"
    {
        return Err(KmsError::unsupported(format!(
            "KeyUsage {u} is not supported; ferry keys are ENCRYPT_DECRYPT."
        )));
    }
    if let Some(s) = spec
        && s != "SYMMETRIC_DEFAULT"
    {
        return Err(KmsError::unsupported(format!(
            "KeySpec {s} is not supported; ferry keys are SYMMETRIC_DEFAULT."
        )));
    }
    if let Some(o) = p.opt_str("Origin", 1, 64)?
        && o != "AWS_KMS"
    {
        return Err(KmsError::unsupported(format!(
            "Origin {o} is not supported; ferry keys are AWS_KMS."
        )));
    }
    if p.opt_bool("MultiRegion")?.unwrap_or(false) {
        return Err(KmsError::unsupported(
            "Multi-Region keys are not supported.",
        ));
    }
    if p.opt_str("CustomKeyStoreId", 1, 64)?.is_some() {
        return Err(AwsError::client(
            "CustomKeyStoreNotFoundException",
            "Custom key stores are not supported.",
        ));
    }
    authorize_account_op(ctx, "CreateKey")?;
    let account = kms.keys.account.clone();
    let key_id = uuid::Uuid::new_v4().to_string();
    let bypass = p
        .opt_bool("BypassPolicyLockoutSafetyCheck")?
        .unwrap_or(false);
    let policy = match p.opt_str("Policy", 1, 131_072)? {
        Some(text) => {
            super::check_policy_size(text)?;
            let parsed = Policy::parse(text)
                .map_err(|e| AwsError::client("MalformedPolicyDocumentException", e.0))?;
            if !bypass {
                let arn = format!("{}key/{key_id}", kms.keys.arn_prefix());
                kms.keys.lockout_check(ctx, &parsed, &arn)?;
            }
            text.to_owned()
        }
        // The default policy lets the account (and, through it, identity
        // policies) in: no lockout to check, as in AWS.
        None => default_policy(&account),
    };
    let tags = parse_tags(p)?;
    let live = insert_new_key(
        kms,
        key_id,
        description,
        "CUSTOMER",
        policy,
        tags,
        None,
        false,
    )?;
    res.push(live.rec.arn.clone());
    Ok(KeyMetadata::of(&live.rec).response())
}

/// Creates a key with fresh material.
pub fn new_key(
    kms: &Kms,
    description: &str,
    manager: &str,
    policy: String,
    tags: Vec<Tag>,
    alias: Option<&str>,
    yearly_rotation: bool,
) -> Result<std::sync::Arc<crate::keystore::LiveKey>, AwsError> {
    let key_id = uuid::Uuid::new_v4().to_string();
    insert_new_key(
        kms,
        key_id,
        description,
        manager,
        policy,
        tags,
        alias,
        yearly_rotation,
    )
}

/// [`new_key`] with the key id chosen by the caller (CreateKey checks the
/// new policy against the key's ARN first).
#[allow(clippy::too_many_arguments)]
fn insert_new_key(
    kms: &Kms,
    key_id: String,
    description: &str,
    manager: &str,
    policy: String,
    tags: Vec<Tag>,
    alias: Option<&str>,
    yearly_rotation: bool,
) -> Result<std::sync::Arc<crate::keystore::LiveKey>, AwsError> {
    let t = now();
    let alias = alias.map(|name| crate::model::AliasRecord {
        name: name.to_owned(),
        arn: format!("{}{name}", kms.keys.arn_prefix()),
        target_key_id: key_id.clone(),
        created: t,
        updated: t,
    });
    let material = kms.keys.new_material(&key_id, 1, None)?;
    let rec = KeyRecord {
        arn: format!("{}key/{key_id}", kms.keys.arn_prefix()),
        key_id,
        account: kms.keys.account.clone(),
        created: t,
        description: description.to_owned(),
        state: KeyState::Enabled,
        deletion_date: None,
        pending_window_days: None,
        key_manager: manager.to_owned(),
        policy,
        tags,
        rotation_enabled: yearly_rotation,
        rotation_period_days: 365,
        next_rotation: yearly_rotation.then_some(t + 365.0 * DAY),
        on_demand_rotation: None,
        materials: vec![material],
    };
    kms.keys.insert_key(rec, alias)
}

/// DescribeKey, typed: shared by the JSON handler and the platform's
/// in-process calls ([`crate::platform`]).
pub struct DescribeKey<'a> {
    /// The key (id, ARN, alias name or alias ARN).
    pub key_id: &'a str,
}

impl Operation for DescribeKey<'_> {
    const NAME: &'static str = "DescribeKey";
    type Output = KeyMetadata;

    fn audit_request(&self) -> Value {
        json!({ "KeyId": self.key_id })
    }

    fn audit_response(out: &KeyMetadata) -> Option<Value> {
        Some(out.response())
    }

    fn run(
        &self,
        kms: &Kms,
        ctx: &RequestContext,
        res: &mut Trail,
    ) -> Result<KeyMetadata, AwsError> {
        let key = kms.keys.resolve(self.key_id, Names::KeyOrAlias)?;
        authorize(kms, ctx, res, &key, Self::NAME)?;
        Ok(KeyMetadata::of(&key.rec))
    }
}

pub fn describe_key(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    check_grant_tokens(kms, p)?;
    let req = DescribeKey {
        key_id: p.key_id("KeyId")?,
    };
    Ok(req.run(kms, ctx, res)?.response())
}

pub fn list_keys(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    _res: &mut Trail,
) -> Result<Value, AwsError> {
    authorize_account_op(ctx, "ListKeys")?;
    let limit = p.limit(100)?;
    let offset = p.marker()?;
    kms.keys.purge_due()?;
    let mut all: Vec<(f64, String, String)> = kms
        .keys
        .state()
        .keys
        .values()
        .map(|k| (k.rec.created, k.rec.key_id.clone(), k.rec.arn.clone()))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let (items, next) = page(&all, offset, limit)?;
    let keys: Vec<Value> = items
        .into_iter()
        .map(|(_, id, arn)| json!({"KeyId": id, "KeyArn": arn}))
        .collect();
    Ok(paged(json!({ "Keys": keys }), next))
}

fn set_state(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
    action: &str,
    enable: bool,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    authorize(kms, ctx, res, &key, action)?;
    refuse_aws_managed(&key, if enable { "enable" } else { "disable" })?;
    let _w = kms.keys.writer();
    kms.keys.update_key(&key.rec.key_id, |rec| {
        if rec.state == KeyState::PendingDeletion {
            return Err(KmsError::pending_deletion(&rec.arn));
        }
        rec.state = if enable {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        Ok(())
    })?;
    Ok(json!({}))
}

pub fn enable_key(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    set_state(kms, ctx, p, res, "EnableKey", true)
}

pub fn disable_key(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    set_state(kms, ctx, p, res, "DisableKey", false)
}

pub fn schedule_key_deletion(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let window = p.opt_int("PendingWindowInDays", 1, 365)?.unwrap_or(30);
    if !(7..=30).contains(&window) {
        return Err(KmsError::validation(
            "pendingWindowInDays",
            &window.to_string(),
            "Member must have value between 7 and 30",
        ));
    }
    authorize(kms, ctx, res, &key, "ScheduleKeyDeletion")?;
    refuse_aws_managed(&key, "delete")?;
    let _w = kms.keys.writer();
    let (live, _) = kms.keys.update_key(&key.rec.key_id, |rec| {
        KeyStore::check_not_pending(&key)?;
        if rec.state == KeyState::PendingDeletion {
            return Err(KmsError::pending_deletion(&rec.arn));
        }
        rec.state = KeyState::PendingDeletion;
        rec.deletion_date = Some((now() + window as f64 * DAY).floor());
        rec.pending_window_days = Some(window as u32);
        Ok(())
    })?;
    Ok(json!({
        "KeyId": live.rec.arn,
        "DeletionDate": live.rec.deletion_date,
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": window,
    }))
}

pub fn cancel_key_deletion(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    authorize(kms, ctx, res, &key, "CancelKeyDeletion")?;
    let _w = kms.keys.writer();
    let (live, _) = kms.keys.update_key(&key.rec.key_id, |rec| {
        if rec.state != KeyState::PendingDeletion {
            return Err(KmsError::invalid_state(format!(
                "{} is not pending deletion.",
                rec.arn
            )));
        }
        // As in AWS, a key whose deletion is cancelled comes back disabled.
        rec.state = KeyState::Disabled;
        rec.deletion_date = None;
        rec.pending_window_days = None;
        Ok(())
    })?;
    Ok(json!({ "KeyId": live.rec.arn }))
}
