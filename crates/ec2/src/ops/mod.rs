//! The EC2 API's operations, one module per resource, and what they share:
//! parameters, `DryRun`, filters, pagination, tags.

pub(crate) mod enis;
pub(crate) mod groups;
pub(crate) mod subnets;
pub(crate) mod tags;
pub(crate) mod vpcs;
pub(crate) mod zones;

use ferry_proto::AwsError;
use ferry_proto::query::{Params, Xml};

use crate::error::ApiError;
use crate::model::Tag;

/// The most tags a resource may have.
pub(crate) const MAX_TAGS: usize = 50;

/// The model's member name as EC2's messages spell it (`VpcId` → `vpcId`).
fn member(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A required string parameter.
pub(crate) fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, AwsError> {
    match p.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::MissingParameter(member(name)).into()),
    }
}

/// An optional boolean parameter.
pub(crate) fn bool_param(p: &Params, name: &str) -> Result<Option<bool>, AwsError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(invalid_value(name, v, "It must be true or false.")),
    }
}

/// An optional integer parameter.
pub(crate) fn int_param(p: &Params, name: &str) -> Result<Option<i64>, AwsError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid_value(name, v, "It must be an integer.")),
    }
}

/// `InvalidParameterValue` as EC2 words a bad value.
pub(crate) fn invalid_value(name: &str, value: &str, why: &str) -> AwsError {
    ApiError::InvalidParameterValue(format!(
        "Value ({value}) for parameter {} is invalid. {why}",
        member(name)
    ))
    .into()
}

/// `DryRunOperation` if the request is a dry run (after authorization,
/// which the listener's gate did).
pub(crate) fn dry_run(p: &Params) -> Result<(), AwsError> {
    if bool_param(p, "DryRun")? == Some(true) {
        return Err(ApiError::DryRun.into());
    }
    Ok(())
}

/// `true`/`false` as EC2 writes booleans.
pub(crate) fn b(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

/// One `Filter.N`.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// The request's filters.
pub(crate) fn filters(p: &Params) -> Result<Vec<Filter>, AwsError> {
    p.indexed("Filter")
        .into_iter()
        .map(|f| {
            let name = f
                .get("Name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| AwsError::from(ApiError::MissingParameter("filter.name".into())))?;
            Ok(Filter {
                name: name.to_owned(),
                values: f.items("Value").into_iter().map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// A resource the Describe calls filter.
pub(crate) trait Filterable {
    /// The resource's values for filter `name`; `None` if the resource
    /// has no such filter.
    fn values(&self, name: &str) -> Option<Vec<String>>;
    /// Its tags.
    fn tags(&self) -> &[Tag];
}

/// Whether `item` passes every filter: some value of the resource
/// matches some value of the filter (`*` and `?` are wildcards).
pub(crate) fn matches(item: &dyn Filterable, filters: &[Filter]) -> Result<bool, AwsError> {
    for f in filters {
        let have: Vec<String> = if let Some(key) = f.name.strip_prefix("tag:") {
            item.tags()
                .iter()
                .filter(|t| t.key == key)
                .map(|t| t.value.clone())
                .collect()
        } else if f.name == "tag-key" {
            item.tags().iter().map(|t| t.key.clone()).collect()
        } else if f.name == "tag-value" {
            item.tags().iter().map(|t| t.value.clone()).collect()
        } else {
            item.values(&f.name).ok_or_else(|| {
                AwsError::from(ApiError::InvalidParameterValue(format!(
                    "The filter '{}' is invalid",
                    f.name
                )))
            })?
        };
        if !f
            .values
            .iter()
            .any(|want| have.iter().any(|h| ferry_policy::glob_escaped(want, h)))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One page of `items` (in key order) from `NextToken` (the first key of
/// the page), at most `MaxResults` (`min..=1000`); the next page's token.
pub(crate) fn page<T>(
    items: Vec<(String, T)>,
    p: &Params,
    min: i64,
    ids_given: bool,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let max = int_param(p, "MaxResults")?;
    if let Some(m) = max {
        if ids_given {
            return Err(ApiError::InvalidParameterCombination(
                "The parameter maxResults cannot be used with a list of ids".into(),
            )
            .into());
        }
        if !(min..=1000).contains(&m) {
            return Err(invalid_value(
                "MaxResults",
                &m.to_string(),
                &format!("It must be between {min} and 1000."),
            ));
        }
    }
    let token = p.get("NextToken").filter(|t| !t.is_empty());
    if let Some(t) = token
        && !items.iter().any(|(k, _)| k == t)
    {
        return Err(ApiError::NextToken(t.to_owned()).into());
    }
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| token.is_none_or(|t| k.as_str() >= t));
    let take = max
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(usize::MAX);
    let out: Vec<T> = rest.by_ref().take(take).map(|(_, v)| v).collect();
    Ok((out, rest.next().map(|(k, _)| k)))
}

/// Writes `<nextToken>` when there is a next page.
pub(crate) fn next_token(x: &mut Xml, next: Option<String>) {
    x.opt("nextToken", next.as_deref());
}

/// Checks one tag as EC2 does.
pub(crate) fn check_tag(key: &str, value: &str) -> Result<(), AwsError> {
    if key.is_empty() || key.chars().count() > 128 {
        return Err(ApiError::InvalidParameterValue(format!(
            "Tag key must be between 1 and 128 characters: '{key}'"
        ))
        .into());
    }
    if value.chars().count() > 256 {
        return Err(ApiError::InvalidParameterValue(format!(
            "Tag value exceeds the maximum length of 256 characters for key '{key}'"
        ))
        .into());
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(ApiError::InvalidParameterValue(
            "Tag keys starting with 'aws:' are reserved for internal use".into(),
        )
        .into());
    }
    Ok(())
}

/// Adds or replaces `new` in `tags`; refuses more than [`MAX_TAGS`].
pub(crate) fn merge_tags(tags: &mut Vec<Tag>, new: &[Tag], resource: &str) -> Result<(), AwsError> {
    for t in new {
        match tags.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value.clone_from(&t.value),
            None => tags.push(t.clone()),
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(ApiError::TagLimit(resource.to_owned()).into());
    }
    Ok(())
}

/// The `Tag.N.Key`/`Tag.N.Value` list of `p`, each tag checked.
pub(crate) fn tag_list(p: &Params) -> Result<Vec<Tag>, AwsError> {
    p.indexed("Tag")
        .into_iter()
        .map(|t| {
            let key = t.get("Key").unwrap_or("").to_owned();
            let value = t.get("Value").unwrap_or("").to_owned();
            check_tag(&key, &value)?;
            Ok(Tag { key, value })
        })
        .collect()
}

/// The tags of the `TagSpecification`s for `resource_type` (others are
/// refused, as EC2 refuses them).
pub(crate) fn tag_specs(p: &Params, resource_type: &str) -> Result<Vec<Tag>, AwsError> {
    let mut tags: Vec<Tag> = Vec::new();
    for spec in p.indexed("TagSpecification") {
        let rt = spec.get("ResourceType").unwrap_or("");
        if rt != resource_type {
            return Err(ApiError::InvalidParameterValue(format!(
                "'{rt}' is not a valid taggable resource type for this operation."
            ))
            .into());
        }
        let new = tag_list(&spec)?;
        merge_tags(&mut tags, &new, "(new resource)")?;
    }
    Ok(tags)
}

/// `<tagSet>` (omitted when there are no tags, as EC2 omits it).
pub(crate) fn tag_set(x: &mut Xml, tags: &[Tag]) {
    if tags.is_empty() {
        return;
    }
    x.items("tagSet", tags, |i, t| {
        i.text("key", &t.key).text("value", &t.value);
    });
}

/// The items of an id list parameter, checked to exist with `exists`;
/// the first missing one is the error.
pub(crate) fn ids<'a>(
    p: &'a Params,
    name: &str,
    exists: impl Fn(&str) -> bool,
    missing: impl Fn(String) -> ApiError,
) -> Result<Vec<&'a str>, AwsError> {
    let ids = p.items(name);
    if let Some(bad) = ids.iter().find(|id| !exists(id)) {
        return Err(missing((*bad).to_owned()).into());
    }
    Ok(ids)
}
