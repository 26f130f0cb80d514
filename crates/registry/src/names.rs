//! Names as ECR validates them: repository names, tags, and the ARN and
//! URI forms of a repository.

use ferry_proto::AwsError;

/// Whether `name` is a repository name ECR accepts:
/// `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`, 2 to
/// 256 characters.
pub fn valid_repository_name(name: &str) -> bool {
    if !(2..=256).contains(&name.len()) {
        return false;
    }
    name.split('/').all(|component| {
        // Alphanumeric runs separated by single '.', '_' or '-'.
        let mut prev_sep = true;
        for c in component.chars() {
            let alnum = c.is_ascii_lowercase() || c.is_ascii_digit();
            if alnum {
                prev_sep = false;
            } else if matches!(c, '.' | '_' | '-') && !prev_sep {
                prev_sep = true;
            } else {
                return false;
            }
        }
        !prev_sep
    })
}

/// A repository name, or `InvalidParameterException` as ECR answers.
pub fn check_repository_name(name: &str) -> Result<(), AwsError> {
    if valid_repository_name(name) {
        Ok(())
    } else {
        Err(AwsError::client(
            "InvalidParameterException",
            format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*' and length between 2 and 256' (got {name:?})"
            ),
        ))
    }
}

/// Whether `tag` is a tag the distribution spec accepts:
/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` (ECR: at most 300, same alphabet).
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    tag.len() <= 128
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A repository's ARN.
pub fn repository_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:ecr:{region}:{account}:repository/{name}")
}

/// The repository name an ARN of this registry names, if any.
pub fn name_of_arn<'a>(arn: &'a str, region: &str, account: &str) -> Option<&'a str> {
    arn.strip_prefix("arn:aws:ecr:")?
        .strip_prefix(region)?
        .strip_prefix(':')?
        .strip_prefix(account)?
        .strip_prefix(":repository/")
}

/// The registry's host name, as ECR forms it (task definitions name images
/// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME:TAG`).
pub fn registry_host(region: &str, account: &str) -> String {
    format!("{account}.dkr.ecr.{region}.amazonaws.com")
}

/// A repository's URI.
pub fn repository_uri(region: &str, account: &str, name: &str) -> String {
    format!("{}/{name}", registry_host(region, account))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in ["ab", "a/b", "my-app", "team/web.api_v2", "a1/b-2/c.3"] {
            assert!(valid_repository_name(ok), "{ok}");
        }
        let long = "a".repeat(257);
        for bad in [
            "a", "A", "a//b", "/ab", "ab/", "a--b", "-ab", "ab-", "a b", "a:b", &long,
        ] {
            assert!(!valid_repository_name(bad), "{bad}");
        }
        assert_eq!(
            check_repository_name("UP").unwrap_err().code,
            "InvalidParameterException"
        );
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn arns_round_trip() {
        let arn = repository_arn("us-east-1", "012345678910", "team/web");
        assert_eq!(
            arn,
            "arn:aws:ecr:us-east-1:012345678910:repository/team/web"
        );
        assert_eq!(
            name_of_arn(&arn, "us-east-1", "012345678910"),
            Some("team/web")
        );
        assert_eq!(name_of_arn(&arn, "eu-west-1", "012345678910"), None);
        assert_eq!(
            repository_uri("us-east-1", "012345678910", "web"),
            "012345678910.dkr.ecr.us-east-1.amazonaws.com/web"
        );
    }
}
