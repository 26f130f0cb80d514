//! Wildcard patterns (`*`, `?`) and policy variables (`${aws:username}`).

use std::collections::BTreeMap;

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// This character, literally.
    Lit(char),
    /// Any run of characters (`*`).
    Star,
    /// Exactly one character (`?`).
    One,
}

/// Compiles `pattern`. With `vars`, `${KEY}` is replaced by the request's
/// single value of condition key KEY (matched literally: a `*` in a user
/// name is no wildcard), `${KEY, 'default'}` falls back to the default,
/// and `${*}`, `${?}`, `${$}` stand for those characters literally.
/// `None` when a variable has no single value and no default: as in IAM,
/// the element then matches nothing.
pub(crate) fn compile(
    pattern: &str,
    vars: Option<&BTreeMap<String, Vec<String>>>,
) -> Option<Vec<Tok>> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(keys) = vars
            && let Some(after) = rest.strip_prefix("${")
            && let Some(end) = after.find('}')
        {
            let inner = after[..end].trim();
            match inner {
                "*" | "?" | "$" => out.extend(inner.chars().map(Tok::Lit)),
                _ => {
                    let (name, default) = match inner.split_once(',') {
                        Some((n, d)) => (n.trim(), Some(d.trim())),
                        None => (inner, None),
                    };
                    let value = match keys.get(&crate::norm_key(name)).map(Vec::as_slice) {
                        Some([one]) => one.as_str(),
                        _ => match default {
                            Some(d) if d.len() >= 2 && d.starts_with('\'') && d.ends_with('\'') => {
                                &d[1..d.len() - 1]
                            }
                            _ => return None,
                        },
                    };
                    out.extend(value.chars().map(Tok::Lit));
                }
            }
            rest = &after[end + 1..];
            continue;
        }
        let mut chars = rest.chars();
        let Some(c) = chars.next() else { break };
        out.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        });
        rest = chars.as_str();
    }
    Some(out)
}

/// Compiles a filter pattern as EC2 reads one: `*` and `?` are wildcards
/// and `\` makes the next character literal (a trailing `\` is itself).
pub(crate) fn compile_escaped(pattern: &str) -> Vec<Tok> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    out
}

/// Whether compiled `pattern` matches all of `text`.
pub(crate) fn matches(pattern: &[Tok], text: &str, ignore_case: bool) -> bool {
    let t: Vec<char> = text.chars().collect();
    matches_chars(pattern, &t, ignore_case)
}

fn matches_chars(p: &[Tok], t: &[char], ignore_case: bool) -> bool {
    let eq = |a: char, b: char| {
        if ignore_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Iterative matcher with backtracking to the last star: linear-ish, no
    // recursion, so hostile patterns cannot blow the stack.
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(Tok::One) => true,
            Some(Tok::Lit(c)) => eq(*c, t[ti]),
            _ => false,
        };
        if step {
            pi += 1;
            ti += 1;
        } else if p.get(pi) == Some(&Tok::Star) {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while p.get(pi) == Some(&Tok::Star) {
        pi += 1;
    }
    pi == p.len()
}

/// ARN matching (`ArnEquals`/`ArnLike`, which IAM treats alike): each of
/// the six colon-separated parts is matched on its own, case-sensitively,
/// with wildcards; the sixth (the resource) keeps any further colons.
pub(crate) fn arn_matches(pattern: &[Tok], arn: &str) -> bool {
    let text: Vec<&str> = arn.splitn(6, ':').collect();
    if text.len() != 6 {
        return false;
    }
    let mut parts: Vec<&[Tok]> = Vec::with_capacity(6);
    let mut start = 0;
    for (i, t) in pattern.iter().enumerate() {
        if parts.len() == 5 {
            break;
        }
        if *t == Tok::Lit(':') {
            parts.push(&pattern[start..i]);
            start = i + 1;
        }
    }
    if parts.len() != 5 {
        return false;
    }
    parts.push(&pattern[start..]);
    parts.iter().zip(&text).all(|(p, t)| matches(p, t, false))
}

/// Whether a pattern matches every string (only stars).
pub(crate) fn is_universal(pattern: &str) -> bool {
    !pattern.is_empty() && pattern.chars().all(|c| c == '*')
}
