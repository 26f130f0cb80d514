//! CreateTags, DeleteTags, DescribeTags over every taggable resource:
//! VPCs, subnets, security groups and their rules, ENIs.

use ferry_proto::AwsError;
use ferry_proto::query::{Params, Xml};

use super::{Filterable, dry_run, filters, matches, merge_tags, page};
use crate::Ec2;
use crate::ec2::State;
use crate::error::ApiError;
use crate::model::Tag;

/// The tags of resource `id` and its EC2 resource type.
fn tags_mut<'a>(s: &'a mut State, id: &str) -> Result<&'a mut Vec<Tag>, ApiError> {
    let kind = id.split_once('-').map_or("", |(k, _)| k);
    let found = match kind {
        "vpc" => s.vpcs.get_mut(id).map(|v| &mut v.tags),
        "subnet" => s.subnets.get_mut(id).map(|v| &mut v.tags),
        "sg" => s.groups.get_mut(id).map(|v| &mut v.tags),
        "sgr" => s.rules.get_mut(id).map(|v| &mut v.tags),
        "eni" => s.enis.get_mut(id).map(|v| &mut v.tags),
        _ => return Err(ApiError::InvalidId(id.to_owned())),
    };
    found.ok_or_else(|| match kind {
        "vpc" => ApiError::VpcNotFound(id.to_owned()),
        "subnet" => ApiError::SubnetNotFound(id.to_owned()),
        "sg" => ApiError::GroupNotFound(id.to_owned()),
        "sgr" => ApiError::RuleNotFound(id.to_owned()),
        _ => ApiError::EniNotFound(id.to_owned()),
    })
}

fn resources(p: &Params) -> Result<Vec<&str>, AwsError> {
    let ids = p.items("ResourceId");
    if ids.is_empty() {
        return Err(ApiError::MissingParameter("resourceIdSet".into()).into());
    }
    Ok(ids)
}

/// CreateTags: adds or replaces tags on every resource named (all must
/// exist, else nothing changes).
pub(crate) fn create(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let ids = resources(p)?;
    let tags = super::tag_list(p)?;
    if tags.is_empty() {
        return Err(ApiError::MissingParameter("tagSet".into()).into());
    }
    ec2.mutate(|s| {
        for id in &ids {
            merge_tags(tags_mut(s, id)?, &tags, id)?;
        }
        Ok::<_, AwsError>(())
    })?;
    let mut x = Xml::new();
    x.text("return", "true");
    Ok(x)
}

/// DeleteTags: removes the keys named (only if the value matches, when one
/// is given); no `Tag` removes every tag.
pub(crate) fn delete(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let ids = resources(p)?;
    let which: Vec<(String, Option<String>)> = p
        .indexed("Tag")
        .into_iter()
        .map(|t| {
            (
                t.get("Key").unwrap_or("").to_owned(),
                t.get("Value").map(str::to_owned),
            )
        })
        .collect();
    ec2.mutate(|s| {
        for id in &ids {
            let tags = tags_mut(s, id)?;
            if which.is_empty() {
                tags.clear();
            }
            tags.retain(|t| {
                !which
                    .iter()
                    .any(|(k, v)| *k == t.key && v.as_ref().is_none_or(|v| *v == t.value))
            });
        }
        Ok::<_, AwsError>(())
    })?;
    let mut x = Xml::new();
    x.text("return", "true");
    Ok(x)
}

struct TagView {
    id: String,
    kind: &'static str,
    tag: Tag,
}

impl Filterable for TagView {
    fn values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "resource-id" => self.id.clone(),
            "resource-type" => self.kind.to_owned(),
            "key" => self.tag.key.clone(),
            "value" => self.tag.value.clone(),
            _ => return None,
        }])
    }

    fn tags(&self) -> &[Tag] {
        std::slice::from_ref(&self.tag)
    }
}

/// DescribeTags.
pub(crate) fn describe(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let filters = filters(p)?;
    let s = ec2.snapshot();
    let mut all: Vec<TagView> = Vec::new();
    let mut add = |id: &str, kind: &'static str, tags: &[Tag]| {
        for t in tags {
            all.push(TagView {
                id: id.to_owned(),
                kind,
                tag: t.clone(),
            });
        }
    };
    for v in s.vpcs.values() {
        add(&v.id, "vpc", &v.tags);
    }
    for v in s.subnets.values() {
        add(&v.id, "subnet", &v.tags);
    }
    for v in s.groups.values() {
        add(&v.id, "security-group", &v.tags);
    }
    for v in s.rules.values() {
        add(&v.id, "security-group-rule", &v.tags);
    }
    for v in s.enis.values() {
        add(&v.id, "network-interface", &v.tags);
    }
    let mut items = Vec::new();
    for t in all {
        if matches(&t, &filters)? {
            // Tokens are "resource id/key": unique and in order.
            items.push((format!("{}/{}", t.id, t.tag.key), t));
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (items, next) = page(items, p, 1, false)?;
    let mut x = Xml::new();
    x.items("tagSet", items, |i, t| {
        i.text("resourceId", &t.id)
            .text("resourceType", t.kind)
            .text("key", &t.tag.key)
            .text("value", &t.tag.value);
    });
    super::next_token(&mut x, next);
    Ok(x)
}
