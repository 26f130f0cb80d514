//! `nextToken` pagination over a list already in a stable order. The token
//! is the opaque (hex-encoded) last key returned; a token that does not
//! decode is an `InvalidParameterException`.

use crate::error::EcsError;

/// Validates `maxResults` (1..=100, default 100).
pub fn max_results(m: Option<i64>) -> Result<usize, EcsError> {
    match m {
        None => Ok(100),
        Some(n) if (1..=100).contains(&n) => Ok(n as usize),
        Some(n) => Err(EcsError::InvalidParameter(format!(
            "maxResults must be between 1 and 100 (got {n})."
        ))),
    }
}

/// One page of `items` (each with its sort key) after `token`; returns the
/// page and the token for the next one.
pub fn page<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    let after = token.map(decode).transpose()?;
    let mut it = items
        .into_iter()
        .skip_while(|(k, _)| after.as_ref().is_some_and(|a| k <= a))
        .peekable();
    let mut out = Vec::new();
    let mut last = None;
    while out.len() < max {
        let Some((k, v)) = it.next() else { break };
        last = Some(k);
        out.push(v);
    }
    let next = if it.peek().is_some() {
        last.map(|k| encode(&k))
    } else {
        None
    };
    Ok((out, next))
}

fn encode(k: &str) -> String {
    k.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode(t: &str) -> Result<String, EcsError> {
    let bad = || EcsError::InvalidParameter("Invalid nextToken.".into());
    if !t.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..t.len())
        .step_by(2)
        .map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_through_everything_once() {
        let items: Vec<(String, u32)> = (0..25).map(|i| (format!("k{i:03}"), i)).collect();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let (p, next) = page(items.clone(), token.as_deref(), 10).unwrap();
            seen.extend(p);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
        assert!(page(items, Some("zz"), 10).is_err());
        assert!(max_results(Some(0)).is_err());
        assert_eq!(max_results(None).unwrap(), 100);
    }
}
