//! TagResource, UntagResource, ListResourceTags.

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};

use super::keys::parse_tags;
use super::{authorize, refuse_aws_managed};
use crate::keystore::{KeyStore, Names};
use crate::params::{Params, missing, page, paged};
use crate::service::{Kms, Trail};

/// AWS's per-key tag limit.
pub const MAX_TAGS: usize = 50;

pub fn tag_resource(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    if p.opt_objects("Tags")?.is_none() {
        return Err(missing("Tags"));
    }
    let tags = parse_tags(p)?;
    authorize(kms, ctx, res, &key, "TagResource")?;
    refuse_aws_managed(&key, "tag")?;
    KeyStore::check_not_pending(&key)?;
    let _w = kms.keys.writer();
    kms.keys.update_key(&key.rec.key_id, |rec| {
        for t in tags {
            match rec.tags.iter_mut().find(|x| x.key == t.key) {
                Some(x) => x.value = t.value,
                None => rec.tags.push(t),
            }
        }
        if rec.tags.len() > MAX_TAGS {
            return Err(AwsError::client(
                "LimitExceededException",
                format!("A key can have at most {MAX_TAGS} tags."),
            ));
        }
        Ok(())
    })?;
    Ok(json!({}))
}

pub fn untag_resource(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let keys = p
        .opt_list("TagKeys", 0, 1000)?
        .ok_or_else(|| missing("TagKeys"))?;
    if let Some(k) = keys
        .iter()
        .find(|k| k.is_empty() || k.chars().count() > 128)
    {
        return Err(crate::error::KmsError::validation(
            "tagKeys",
            &k.chars().take(64).collect::<String>(),
            "Member must have length between 1 and 128",
        ));
    }
    authorize(kms, ctx, res, &key, "UntagResource")?;
    refuse_aws_managed(&key, "untag")?;
    KeyStore::check_not_pending(&key)?;
    let _w = kms.keys.writer();
    kms.keys.update_key(&key.rec.key_id, |rec| {
        rec.tags.retain(|t| !keys.contains(&t.key));
        Ok(())
    })?;
    Ok(json!({}))
}

pub fn list_resource_tags(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let limit = p.limit(50)?;
    let offset = p.marker()?;
    authorize(kms, ctx, res, &key, "ListResourceTags")?;
    let all: Vec<Value> = key
        .rec
        .tags
        .iter()
        .map(|t| json!({"TagKey": t.key, "TagValue": t.value}))
        .collect();
    let (items, next) = page(&all, offset, limit)?;
    Ok(paged(json!({ "Tags": items }), next))
}
