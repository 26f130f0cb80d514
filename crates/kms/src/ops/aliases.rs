//! CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};

use super::{authorize, authorize_account_op, refuse_aws_managed};
use crate::error::KmsError;
use crate::keystore::{KeyStore, Names, Request};
use crate::model::{AliasRecord, now};
use crate::params::{Params, check_pattern, page, paged};
use crate::service::{Kms, Trail};

fn alias_name<'a>(p: &Params<'a>) -> Result<&'a str, AwsError> {
    let name = p.str("AliasName", 1, 256)?;
    check_pattern(
        "AliasName",
        name,
        |c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-'),
        "^[a-zA-Z0-9:/_-]+$",
    )?;
    if !name.starts_with("alias/") || name.len() == "alias/".len() {
        return Err(KmsError::invalid(
            "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html",
        ));
    }
    Ok(name)
}

fn refuse_reserved(name: &str) -> Result<(), AwsError> {
    if name.starts_with("alias/aws/") {
        return Err(AwsError::client(
            "NotAuthorizedException",
            "Cannot create, update or delete aliases with the reserved prefix alias/aws/.",
        ));
    }
    Ok(())
}

pub fn create_alias(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let name = alias_name(p)?;
    refuse_reserved(name)?;
    let key = kms.keys.resolve(p.key_id("TargetKeyId")?, Names::KeyOnly)?;
    authorize(kms, ctx, res, &key, "CreateAlias")?;
    KeyStore::check_not_pending(&key)?;
    let _w = kms.keys.writer();
    let arn = format!("{}{name}", kms.keys.arn_prefix());
    let t = now();
    // The name is checked in the write transaction (another replica may
    // have taken it since this one's copy was loaded).
    kms.keys.create_alias(AliasRecord {
        name: name.to_owned(),
        arn,
        target_key_id: key.rec.key_id.clone(),
        created: t,
        updated: t,
    })?;
    Ok(json!({}))
}

pub fn update_alias(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let name = alias_name(p)?;
    refuse_reserved(name)?;
    let key = kms.keys.resolve(p.key_id("TargetKeyId")?, Names::KeyOnly)?;
    authorize(kms, ctx, res, &key, "UpdateAlias")?;
    refuse_aws_managed(&key, "alias")?;
    KeyStore::check_not_pending(&key)?;
    let _w = kms.keys.writer();
    let arn = format!("{}{name}", kms.keys.arn_prefix());
    let Some(alias) = kms.keys.state().aliases.get(name).cloned() else {
        return Err(KmsError::alias_not_found(&arn));
    };
    // Bind first: the read guard must not live across `authorize`.
    let old = kms.keys.state().keys.get(&alias.target_key_id).cloned();
    if let Some(old) = old {
        res.push(old.rec.arn.clone());
        kms.keys
            .authorize(ctx, &old, "UpdateAlias", &Request::default())?;
    }
    kms.keys.retarget_alias(&alias.name, &key.rec.key_id)?;
    Ok(json!({}))
}

pub fn delete_alias(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let name = alias_name(p)?;
    refuse_reserved(name)?;
    let _w = kms.keys.writer();
    let arn = format!("{}{name}", kms.keys.arn_prefix());
    let Some(alias) = kms.keys.state().aliases.get(name).cloned() else {
        return Err(KmsError::alias_not_found(&arn));
    };
    let key = kms.keys.state().keys.get(&alias.target_key_id).cloned();
    if let Some(key) = key {
        authorize(kms, ctx, res, &key, "DeleteAlias")?;
    }
    kms.keys.delete_alias(name)?;
    Ok(json!({}))
}

pub fn list_aliases(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    authorize_account_op(ctx, "ListAliases")?;
    let limit = p.limit(100)?;
    let offset = p.marker()?;
    let filter = match p.opt_str("KeyId", 1, 2048)? {
        Some(k) => {
            let key = kms.keys.resolve(k, Names::KeyOnly)?;
            res.push(key.rec.arn.clone());
            Some(key.rec.key_id.clone())
        }
        None => None,
    };
    kms.keys.purge_due()?;
    let all: Vec<Value> = kms
        .keys
        .state()
        .aliases
        .values()
        .filter(|a| filter.as_ref().is_none_or(|k| &a.target_key_id == k))
        .map(|a| {
            json!({
                "AliasName": a.name,
                "AliasArn": a.arn,
                "TargetKeyId": a.target_key_id,
                "CreationDate": a.created,
                "LastUpdatedDate": a.updated,
            })
        })
        .collect();
    let (items, next) = page(&all, offset, limit)?;
    Ok(paged(json!({ "Aliases": items }), next))
}
