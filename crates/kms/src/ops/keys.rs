//! CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
//! ScheduleKeyDeletion, CancelKeyDeletion.

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};

use super::{KeyMetadata, authorize, authorize_account_op, check_grant_tokens, refuse_aws_managed};
use crate::asym::{self, Spec};
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
    let kind = key_kind(p)?;
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
        kind,
    )?;
    res.push(live.rec.arn.clone());
    Ok(KeyMetadata::of(&live.rec).response())
}

/// What kind of key CreateKey makes.
#[derive(Debug, Clone, Copy)]
pub struct KeyKind {
    /// The key spec.
    pub spec: Spec,
    /// `KeyUsage`.
    pub usage: &'static str,
    /// `Origin`.
    pub origin: &'static str,
}

impl KeyKind {
    /// A symmetric encryption key with KMS-made material.
    pub const SYMMETRIC: Self = Self {
        spec: Spec::Symmetric,
        usage: "ENCRYPT_DECRYPT",
        origin: "AWS_KMS",
    };
}

/// Every `KeySpec` the model lists.
const KEY_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ECC_NIST_EDWARDS25519",
];

/// CreateKey's `KeySpec`, `KeyUsage` and `Origin`, checked as AWS checks
/// them: values outside the model are `ValidationException`; a usage the
/// spec does not allow too; specs and origins ferry does not serve are
/// `UnsupportedOperationException`.
fn key_kind(p: &Params<'_>) -> Result<KeyKind, AwsError> {
    let usage = p.opt_enum(
        "KeyUsage",
        &[
            "SIGN_VERIFY",
            "ENCRYPT_DECRYPT",
            "GENERATE_VERIFY_MAC",
            "KEY_AGREEMENT",
        ],
    )?;
    let spec_name = p.opt_enum("KeySpec", KEY_SPECS)?;
    // The deprecated name's enum: the first twelve and SM2.
    let cmk_spec = p.opt_enum("CustomerMasterKeySpec", &KEY_SPECS[..13])?;
    if spec_name.is_some() && cmk_spec.is_some() {
        return Err(KmsError::invalid(
            "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.",
        ));
    }
    let spec_name = spec_name.or(cmk_spec).unwrap_or("SYMMETRIC_DEFAULT");
    let origin = p
        .opt_enum(
            "Origin",
            &["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"],
        )?
        .unwrap_or("AWS_KMS");
    let Some(spec) = Spec::parse(spec_name) else {
        return Err(KmsError::unsupported(format!(
            "KeySpec {spec_name} is not supported."
        )));
    };
    let usage = usage.unwrap_or("ENCRYPT_DECRYPT");
    if !spec.allows_usage(usage) {
        if usage == "KEY_AGREEMENT" && matches!(spec, Spec::Ec(_)) {
            return Err(KmsError::unsupported(
                "KeyUsage KEY_AGREEMENT is not supported.",
            ));
        }
        return Err(KmsError::invalid(format!(
            "KeyUsage {usage} is not compatible with KeySpec {spec_name}"
        )));
    }
    let origin = match origin {
        "AWS_KMS" => "AWS_KMS",
        "EXTERNAL" if matches!(spec, Spec::Symmetric | Spec::Hmac(_)) => "EXTERNAL",
        "EXTERNAL" => {
            return Err(KmsError::unsupported(
                "ferry imports key material only into symmetric encryption and HMAC keys.",
            ));
        }
        o => {
            return Err(KmsError::unsupported(format!(
                "Origin {o} is not supported."
            )));
        }
    };
    let usage = match usage {
        "SIGN_VERIFY" => "SIGN_VERIFY",
        "GENERATE_VERIFY_MAC" => "GENERATE_VERIFY_MAC",
        _ => "ENCRYPT_DECRYPT",
    };
    Ok(KeyKind {
        spec,
        usage,
        origin,
    })
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
        KeyKind::SYMMETRIC,
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
    kind: KeyKind,
) -> Result<std::sync::Arc<crate::keystore::LiveKey>, AwsError> {
    let t = now();
    let alias = alias.map(|name| crate::model::AliasRecord {
        name: name.to_owned(),
        arn: format!("{}{name}", kms.keys.arn_prefix()),
        target_key_id: key_id.clone(),
        created: t,
        updated: t,
    });
    let materials = match kind.spec {
        _ if kind.origin == "EXTERNAL" => Vec::new(),
        Spec::Symmetric => vec![kms.keys.new_material(&key_id, 1, None)?],
        spec => {
            let raw = asym::generate(spec)
                .map_err(|_| KmsError::internal("generating key material failed"))?;
            let mut id = [0u8; 32];
            crate::crypto::random(&mut id)
                .map_err(|_| KmsError::internal("random generation failed"))?;
            vec![
                kms.keys
                    .seal_material(&key_id, 1, None, &raw, hex::encode(id))?,
            ]
        }
    };
    let rec = KeyRecord {
        arn: format!("{}key/{key_id}", kms.keys.arn_prefix()),
        key_id,
        account: kms.keys.account.clone(),
        created: t,
        description: description.to_owned(),
        state: if materials.is_empty() {
            KeyState::PendingImport
        } else {
            KeyState::Enabled
        },
        deletion_date: None,
        pending_window_days: None,
        key_manager: manager.to_owned(),
        policy,
        tags,
        rotation_enabled: yearly_rotation,
        rotation_period_days: 365,
        next_rotation: yearly_rotation.then_some(t + 365.0 * DAY),
        on_demand_rotation: None,
        materials,
        key_spec: kind.spec.name().to_owned(),
        key_usage: kind.usage.to_owned(),
        origin: kind.origin.to_owned(),
        expiration_model: None,
        valid_to: None,
        imported_material_id: None,
        import: None,
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
        match rec.state_at(now()) {
            KeyState::PendingDeletion => return Err(KmsError::pending_deletion(&rec.arn)),
            KeyState::PendingImport => return Err(KmsError::pending_import(&rec.arn)),
            KeyState::Enabled | KeyState::Disabled => {}
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
        // As in AWS, a key whose deletion is cancelled comes back disabled
        // (an imported key without material: waiting for its import).
        rec.state = if rec.origin == "EXTERNAL" && rec.materials.is_empty() {
            KeyState::PendingImport
        } else {
            KeyState::Disabled
        };
        rec.deletion_date = None;
        rec.pending_window_days = None;
        Ok(())
    })?;
    Ok(json!({ "KeyId": live.rec.arn }))
}

pub fn update_key_description(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let description = p.str("Description", 0, 8192)?;
    authorize(kms, ctx, res, &key, "UpdateKeyDescription")?;
    refuse_aws_managed(&key, "update the description of")?;
    let _w = kms.keys.writer();
    kms.keys.update_key(&key.rec.key_id, |rec| {
        if rec.state == KeyState::PendingDeletion {
            return Err(KmsError::pending_deletion(&rec.arn));
        }
        rec.description = description.to_owned();
        Ok(())
    })?;
    Ok(json!({}))
}
