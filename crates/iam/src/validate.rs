//! Request members checked against the IAM and STS models' constraints,
//! with AWS's `ValidationError` wording.

use ferry_proto::AwsError;

use crate::error::{invalid_input, validation};
use crate::model::Tag;

fn constraint(member: &str, value: &str, what: &str) -> AwsError {
    validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {what}"
    ))
}

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

fn length(member: &str, value: &str, min: usize, max: usize) -> Result<(), AwsError> {
    let n = value.chars().count();
    if n < min {
        return Err(constraint(
            member,
            value,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(constraint(
            member,
            value,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// A role, user or policy name: `[\w+=,.@-]+`, at most `max` characters.
pub fn name(member: &str, value: &str, max: usize) -> Result<(), AwsError> {
    length(member, value, 1, max)?;
    if !value.chars().all(word_char) {
        return Err(constraint(
            member,
            value,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        ));
    }
    Ok(())
}

/// A role session name: 2 to 64 of `[\w+=,.@-]`.
pub fn session_name(value: &str) -> Result<(), AwsError> {
    length("roleSessionName", value, 2, 64)?;
    if !value.chars().all(word_char) {
        return Err(constraint(
            "roleSessionName",
            value,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    Ok(())
}

/// A path: `/` or `/` + printable ASCII + `/`, at most 512 characters.
pub fn path(value: &str) -> Result<(), AwsError> {
    length("path", value, 1, 512)?;
    let ok = value == "/"
        || (value.len() >= 3
            && value.starts_with('/')
            && value.ends_with('/')
            && value.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c)));
    if !ok {
        return Err(constraint(
            "path",
            value,
            "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        ));
    }
    Ok(())
}

/// A path prefix of a List call: starts with `/`.
pub fn path_prefix(value: &str) -> Result<(), AwsError> {
    length("pathPrefix", value, 1, 512)?;
    if !value.starts_with('/') {
        return Err(constraint(
            "pathPrefix",
            value,
            "Member must satisfy regular expression pattern: \\u002F[\\u0021-\\u007F]*",
        ));
    }
    Ok(())
}

/// A policy document's size and characters (the model's
/// `policyDocumentType`).
pub fn policy_document(member: &str, value: &str) -> Result<(), AwsError> {
    if value.is_empty() {
        return Err(constraint(
            member,
            value,
            "Member must have length greater than or equal to 1",
        ));
    }
    if value.len() > 131_072 {
        return Err(validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length less than or equal to 131072"
        )));
    }
    if !value
        .chars()
        .all(|c| matches!(c, '\t' | '\n' | '\r') || ('\u{20}'..='\u{ff}').contains(&c))
    {
        return Err(validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+"
        )));
    }
    Ok(())
}

/// A role description: at most 1000 characters.
pub fn description(value: &str) -> Result<(), AwsError> {
    length("description", value, 0, 1000)
}

/// MaxSessionDuration: 3600 to 43200 seconds.
pub fn max_session_duration(value: i64) -> Result<u32, AwsError> {
    let v = value.to_string();
    if value < 3600 {
        return Err(constraint(
            "maxSessionDuration",
            &v,
            "Member must have value greater than or equal to 3600",
        ));
    }
    if value > 43_200 {
        return Err(constraint(
            "maxSessionDuration",
            &v,
            "Member must have value less than or equal to 43200",
        ));
    }
    u32::try_from(value)
        .map_err(|_| constraint("maxSessionDuration", &v, "Member must be a number"))
}

/// The most tags one role or user may have.
pub const MAX_TAGS: usize = 50;

/// Tags of a Create or Tag call: keys 1..=128, values 0..=256, no `aws:`
/// prefix, no key twice (keys compare without regard to case).
pub fn tags(tags: &[Tag]) -> Result<(), AwsError> {
    for t in tags {
        length("tags.member.key", &t.key, 1, 128)?;
        length("tags.member.value", &t.value, 0, 256)?;
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid_input(
                "User is not authorized to perform: iam:TagRole on resource with tag keys beginning with aws:",
            ));
        }
    }
    for (i, t) in tags.iter().enumerate() {
        if tags[..i].iter().any(|o| o.key.eq_ignore_ascii_case(&t.key)) {
            return Err(invalid_input(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
            ));
        }
    }
    Ok(())
}

/// A remote agent's host name (`name`): 1 to 64 of `[A-Za-z0-9._-]`, the
/// control plane's rule for host names. A refused name is echoed cut to 80
/// characters: it is the caller's input, of any length.
pub fn agent_host(value: &str) -> Result<(), AwsError> {
    if ferry_proto::is_host_name(value) {
        return Ok(());
    }
    let shown: String = value.chars().take(80).collect();
    Err(constraint(
        "name",
        &shown,
        "Member must satisfy regular expression pattern: [A-Za-z0-9._-]{1,64}",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_durations() {
        assert!(name("roleName", "my-role_1+=,.@", 64).is_ok());
        let e = name("roleName", "bad name", 64).unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(e.message.contains("'roleName'"), "{}", e.message);
        assert!(name("roleName", &"a".repeat(65), 64).is_err());
        assert!(path("/").is_ok() && path("/a/b/").is_ok());
        assert!(path("/a").is_err() && path("a/").is_err() && path("//").is_err());
        assert!(session_name("s").is_err() && session_name("ok").is_ok());
        assert!(max_session_duration(3599).is_err() && max_session_duration(43_201).is_err());
        assert_eq!(max_session_duration(7200).unwrap(), 7200);
        let t = |k: &str| Tag {
            key: k.into(),
            value: "v".into(),
        };
        assert!(tags(&[t("a"), t("b")]).is_ok());
        assert_eq!(tags(&[t("a"), t("A")]).unwrap_err().code, "InvalidInput");
        assert_eq!(tags(&[t("aws:x")]).unwrap_err().code, "InvalidInput");
        assert!(policy_document("policyDocument", "").is_err());
        assert!(policy_document("policyDocument", "{\u{1}}").is_err());
    }
}
