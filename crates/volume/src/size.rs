//! Volume sizes: parsing `20GiB`-style strings and the allowed range.

/// One GiB.
pub const GIB: u64 = 1 << 30;
/// Smallest volume (data segment) size.
pub const MIN_SIZE: u64 = GIB;
/// Largest volume (data segment) size.
pub const MAX_SIZE: u64 = 200 * GIB;

/// Errors parsing or checking a size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error("invalid size {0:?} (expected e.g. 20GiB, 1024MiB)")]
    Syntax(String),
    /// Outside 1..=200 GiB.
    #[error("size {0} bytes is outside 1..=200 GiB")]
    Range(u64),
    /// Not a whole number of 4096-byte sectors.
    #[error("size {0} bytes is not a multiple of 4096")]
    Alignment(u64),
}

/// Parses `N[unit]` with units B, K/KiB, M/MiB, G/GiB, T/TiB (binary) and checks the range.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| SizeError::Syntax(s.into()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(SizeError::Syntax(s.into())),
    };
    let bytes = n.checked_mul(mult).ok_or(SizeError::Syntax(s.into()))?;
    check_size(bytes)?;
    Ok(bytes)
}

/// Checks a size in bytes against 1..=200 GiB and 4096-byte alignment.
pub fn check_size(bytes: u64) -> Result<(), SizeError> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&bytes) {
        return Err(SizeError::Range(bytes));
    }
    if !bytes.is_multiple_of(4096) {
        return Err(SizeError::Alignment(bytes));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("20GiB"), Ok(20 * GIB));
        assert_eq!(parse_size("20G"), Ok(20 * GIB));
        assert_eq!(parse_size("1024MiB"), Ok(GIB));
        assert_eq!(parse_size("200GiB"), Ok(200 * GIB));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(parse_size("0GiB"), Err(SizeError::Range(0)));
        assert_eq!(parse_size("201GiB"), Err(SizeError::Range(201 * GIB)));
        assert_eq!(parse_size("1023MiB"), Err(SizeError::Range(1023 << 20)));
        assert!(matches!(parse_size("lots"), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size("5PiB"), Err(SizeError::Syntax(_))));
        assert!(matches!(
            parse_size("99999999999999999999T"),
            Err(SizeError::Syntax(_))
        ));
        assert_eq!(
            parse_size("1073741825"),
            Err(SizeError::Alignment(1073741825))
        );
    }
}
