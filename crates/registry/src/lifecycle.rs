//! Lifecycle policies in ECR's grammar, and which images they expire.
//!
//! A policy is `{"rules": [...]}`; each rule has a unique `rulePriority`
//! (lower is evaluated first), a `selection` (`tagStatus` tagged, untagged
//! or any; for tagged, `tagPrefixList` or `tagPatternList`; `countType`
//! `imageCountMoreThan` or `sinceImagePushed` with `countUnit: days`;
//! `countNumber`) and `action: {"type": "expire"}`. As in ECR, an image
//! matched by a rule is claimed by it: rules of lower priority never see
//! it (whether the rule expired or kept it), and a rule with `tagStatus:
//! any` must have the lowest priority.

use ferry_proto::AwsError;
use serde::Deserialize;

/// A parsed, checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    priority: i64,
    status: TagStatus,
    prefixes: Vec<String>,
    patterns: Vec<String>,
    count: Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    /// Keep this many of the newest matching images.
    MoreThan(u64),
    /// Expire matching images pushed more than this many days ago.
    SinceDays(u64),
}

/// One image as lifecycle rules see it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its digest.
    pub digest: &'a str,
    /// Its tags.
    pub tags: &'a [String],
    /// When it was pushed, seconds since the epoch.
    pub pushed_at: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    rules: Vec<WireRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireRule {
    rule_priority: i64,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted, not used")]
    description: Option<String>,
    selection: WireSelection,
    action: WireAction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireSelection {
    tag_status: String,
    #[serde(default)]
    tag_prefix_list: Vec<String>,
    #[serde(default)]
    tag_pattern_list: Vec<String>,
    count_type: String,
    #[serde(default)]
    count_unit: Option<String>,
    count_number: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireAction {
    #[serde(rename = "type")]
    kind: String,
}

fn invalid(msg: impl Into<String>) -> AwsError {
    AwsError::client(
        "InvalidParameterException",
        format!(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: '{}'",
            msg.into()
        ),
    )
}

impl Policy {
    /// Parses and checks `text` as ECR does (`InvalidParameterException`).
    pub fn parse(text: &str) -> Result<Self, AwsError> {
        // ECR's upper bound on lifecyclePolicyText (the CLI checks the lower).
        if text.len() > 30720 {
            return Err(invalid("Lifecycle policy text is longer than 30720"));
        }
        let wire: Wire = serde_json::from_str(text)
            .map_err(|e| invalid(format!("Lifecycle policy validation failure: {e}")))?;
        if wire.rules.is_empty() {
            return Err(invalid("Lifecycle policy must have at least one rule"));
        }
        let mut rules = Vec::new();
        for r in wire.rules {
            if r.rule_priority < 1 {
                return Err(invalid("rulePriority must be at least 1"));
            }
            if rules.iter().any(|x: &Rule| x.priority == r.rule_priority) {
                return Err(invalid(format!(
                    "duplicate rulePriority {}",
                    r.rule_priority
                )));
            }
            if r.action.kind != "expire" {
                return Err(invalid(format!("unknown action type {:?}", r.action.kind)));
            }
            let s = r.selection;
            let status = match s.tag_status.as_str() {
                "tagged" => TagStatus::Tagged,
                "untagged" => TagStatus::Untagged,
                "any" => TagStatus::Any,
                other => return Err(invalid(format!("unknown tagStatus {other:?}"))),
            };
            let has_lists = !s.tag_prefix_list.is_empty() || !s.tag_pattern_list.is_empty();
            match status {
                TagStatus::Tagged if !has_lists => {
                    return Err(invalid(
                        "tagPrefixList or tagPatternList is required when tagStatus is tagged",
                    ));
                }
                TagStatus::Tagged
                    if !s.tag_prefix_list.is_empty() && !s.tag_pattern_list.is_empty() =>
                {
                    return Err(invalid(
                        "tagPrefixList and tagPatternList cannot both be specified",
                    ));
                }
                TagStatus::Untagged | TagStatus::Any if has_lists => {
                    return Err(invalid(
                        "tagPrefixList and tagPatternList are only allowed when tagStatus is tagged",
                    ));
                }
                _ => {}
            }
            if s.tag_pattern_list
                .iter()
                .any(|p| p.matches('*').count() > 4)
            {
                return Err(invalid("a tag pattern may have at most 4 wildcards"));
            }
            let n = u64::try_from(s.count_number)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid("countNumber must be at least 1"))?;
            let count = match (s.count_type.as_str(), s.count_unit.as_deref()) {
                ("imageCountMoreThan", None) => Count::MoreThan(n),
                ("imageCountMoreThan", Some(_)) => {
                    return Err(invalid("countUnit is not allowed with imageCountMoreThan"));
                }
                ("sinceImagePushed", Some("days")) => Count::SinceDays(n),
                ("sinceImagePushed", _) => {
                    return Err(invalid("countUnit must be days with sinceImagePushed"));
                }
                (other, _) => return Err(invalid(format!("unknown countType {other:?}"))),
            };
            rules.push(Rule {
                priority: r.rule_priority,
                status,
                prefixes: s.tag_prefix_list,
                patterns: s.tag_pattern_list,
                count,
            });
        }
        rules.sort_by_key(|r| r.priority);
        if rules
            .iter()
            .rev()
            .skip(1)
            .any(|r| r.status == TagStatus::Any)
        {
            return Err(invalid(
                "a rule with tagStatus any must have the highest rulePriority value",
            ));
        }
        Ok(Self { rules })
    }

    /// The digests this policy expires among `images` at `now` (seconds
    /// since the epoch).
    pub fn expired(&self, images: &[Candidate<'_>], now: f64) -> Vec<String> {
        let mut claimed = vec![false; images.len()];
        let mut out = Vec::new();
        for rule in &self.rules {
            // The rule's images, newest first.
            let mut mine: Vec<usize> = (0..images.len())
                .filter(|&i| !claimed[i] && rule.selects(&images[i]))
                .collect();
            mine.sort_by(|&a, &b| images[b].pushed_at.total_cmp(&images[a].pushed_at));
            for (rank, &i) in mine.iter().enumerate() {
                claimed[i] = true;
                let expire = match rule.count {
                    Count::MoreThan(n) => rank as u64 >= n,
                    Count::SinceDays(d) => now - images[i].pushed_at > (d * 86_400) as f64,
                };
                if expire {
                    out.push(images[i].digest.to_owned());
                }
            }
        }
        out
    }
}

impl Rule {
    fn selects(&self, image: &Candidate<'_>) -> bool {
        match self.status {
            TagStatus::Any => true,
            TagStatus::Untagged => image.tags.is_empty(),
            // Every prefix (or pattern) must be matched by some tag.
            TagStatus::Tagged => {
                !image.tags.is_empty()
                    && self
                        .prefixes
                        .iter()
                        .all(|p| image.tags.iter().any(|t| t.starts_with(p.as_str())))
                    && self
                        .patterns
                        .iter()
                        .all(|p| image.tags.iter().any(|t| wildcard(p, t)))
            }
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(n: u64, status: &str, extra: &str) -> String {
        format!(
            r#"{{"rules":[{{"rulePriority":1,"description":"keep","selection":{{"tagStatus":"{status}"{extra},"countType":"imageCountMoreThan","countNumber":{n}}},"action":{{"type":"expire"}}}}]}}"#
        )
    }

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn count_rule_keeps_the_newest() {
        let p = Policy::parse(&keep(1, "any", "")).unwrap();
        let (a, b) = (tags(&["v1"]), tags(&["v2"]));
        let imgs = [
            Candidate {
                digest: "old",
                tags: &a,
                pushed_at: 1.0,
            },
            Candidate {
                digest: "new",
                tags: &b,
                pushed_at: 2.0,
            },
        ];
        assert_eq!(p.expired(&imgs, 10.0), vec!["old".to_owned()]);
    }

    #[test]
    fn tagged_prefix_and_pattern_selection() {
        let p = Policy::parse(&keep(1, "tagged", r#","tagPrefixList":["prod"]"#)).unwrap();
        let (a, b, c, none) = (
            tags(&["prod-1"]),
            tags(&["prod-2"]),
            tags(&["dev-1"]),
            tags(&[]),
        );
        let imgs = [
            Candidate {
                digest: "p1",
                tags: &a,
                pushed_at: 1.0,
            },
            Candidate {
                digest: "p2",
                tags: &b,
                pushed_at: 2.0,
            },
            Candidate {
                digest: "d1",
                tags: &c,
                pushed_at: 0.0,
            },
            Candidate {
                digest: "u",
                tags: &none,
                pushed_at: 0.0,
            },
        ];
        assert_eq!(p.expired(&imgs, 10.0), vec!["p1".to_owned()]);
        // "*-1" selects p1 and d1; the newer (p1) is kept.
        let p = Policy::parse(&keep(1, "tagged", r#","tagPatternList":["*-1"]"#)).unwrap();
        assert_eq!(p.expired(&imgs, 10.0), vec!["d1".to_owned()]);
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXcYYb"));
        assert!(wildcard("*", ""));
    }

    #[test]
    fn age_rule_and_claiming() {
        let text = r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["keep"],"countType":"imageCountMoreThan","countNumber":100},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]}"#;
        let p = Policy::parse(text).unwrap();
        let (k, o) = (tags(&["keep-me"]), tags(&["other"]));
        let day = 86_400.0;
        let imgs = [
            Candidate {
                digest: "kept",
                tags: &k,
                pushed_at: 0.0,
            },
            Candidate {
                digest: "old",
                tags: &o,
                pushed_at: 0.0,
            },
            Candidate {
                digest: "young",
                tags: &o,
                pushed_at: 2.5 * day,
            },
        ];
        // "kept" is claimed by rule 1, so rule 2 cannot expire it.
        assert_eq!(p.expired(&imgs, 3.0 * day), vec!["old".to_owned()]);
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            "{",
            r#"{"rules":[]}"#,
            &keep(0, "any", ""),
            &keep(1, "tagged", ""),
            &keep(1, "untagged", r#","tagPrefixList":["x"]"#),
            &keep(1, "weird", ""),
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#,
            r#"{"rules":[
              {"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
              {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
        ] {
            let e = Policy::parse(bad).unwrap_err();
            assert_eq!(e.code, "InvalidParameterException", "{bad}");
        }
    }
}
