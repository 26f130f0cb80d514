//! Log group and stream names, parsed once at the edge.

use ferry_proto::AwsError;

/// A valid log group name: 1..=512 of `[.-_/#A-Za-z0-9]`.
pub(crate) fn group(name: &str) -> Result<&str, AwsError> {
    let ok = (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_/#".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(AwsError::client(
            "InvalidParameterException",
            format!(
                "1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+ and have length between 1 and 512"
            ),
        ))
    }
}

/// A valid log stream name: 1..=512 characters, none of `:` or `*` (and,
/// ferry's addition, no control characters, so keys stay printable).
pub(crate) fn stream(name: &str) -> Result<&str, AwsError> {
    let ok = (1..=512).contains(&name.len())
        && !name.chars().any(|c| c == ':' || c == '*' || c.is_control());
    if ok {
        Ok(name)
    } else {
        Err(AwsError::client(
            "InvalidParameterException",
            format!(
                "1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]* and have length between 1 and 512"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::group("/ecs/fargate-task-definition").is_ok());
        assert!(super::group("").is_err());
        assert!(super::group("a:b").is_err());
        assert!(super::group(&"a".repeat(513)).is_err());
        assert!(super::stream("ecs/app/0123").is_ok());
        assert!(super::stream("a:b").is_err());
        assert!(super::stream("a*").is_err());
        assert!(super::stream("a\nb").is_err());
    }
}
