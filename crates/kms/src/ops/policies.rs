//! GetKeyPolicy, PutKeyPolicy, ListKeyPolicies. A key has one policy,
//! named `default`.

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};

use super::{authorize, refuse_aws_managed};
use crate::keystore::{KeyStore, Names};
use crate::params::{Params, check_pattern};
use crate::policy::Policy;
use crate::service::{Kms, Trail};

fn policy_name<'a>(p: &Params<'a>) -> Result<&'a str, AwsError> {
    let name = p.opt_str("PolicyName", 1, 128)?.unwrap_or("default");
    check_pattern(
        "PolicyName",
        name,
        |c| c.is_alphanumeric() || c == '_',
        "[\\w]+",
    )?;
    if name != "default" {
        return Err(AwsError::client(
            "NotFoundException",
            format!("Policy {name} does not exist; the only key policy is 'default'."),
        ));
    }
    Ok(name)
}

pub fn get_key_policy(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let name = policy_name(p)?;
    authorize(kms, ctx, res, &key, "GetKeyPolicy")?;
    Ok(json!({ "Policy": key.rec.policy, "PolicyName": name }))
}

pub fn put_key_policy(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    policy_name(p)?;
    let text = p.str("Policy", 1, 131_072)?;
    super::check_policy_size(text)?;
    let bypass = p
        .opt_bool("BypassPolicyLockoutSafetyCheck")?
        .unwrap_or(false);
    authorize(kms, ctx, res, &key, "PutKeyPolicy")?;
    refuse_aws_managed(&key, "change the key policy of")?;
    KeyStore::check_not_pending(&key)?;
    let parsed = Policy::parse(text)
        .map_err(|e| AwsError::client("MalformedPolicyDocumentException", e.0))?;
    if !bypass {
        kms.keys.lockout_check(ctx, &parsed, &key.rec.arn)?;
    }
    let _w = kms.keys.writer();
    kms.keys.update_key(&key.rec.key_id, |rec| {
        rec.policy = text.to_owned();
        Ok(())
    })?;
    Ok(json!({}))
}

pub fn list_key_policies(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    p.limit(100)?;
    p.marker()?;
    authorize(kms, ctx, res, &key, "ListKeyPolicies")?;
    Ok(json!({ "PolicyNames": ["default"], "Truncated": false }))
}
