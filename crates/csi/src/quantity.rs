//! Kubernetes resource quantities (`20Gi`, `1G`, `1.5Ti`, `5e9`), as a
//! volume's `size` attribute is written, turned into bytes for a volume.
//!
//! The grammar is Kubernetes' (`resource.Quantity`): a non-negative decimal
//! number, then a binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix
//! (k M G T P E), or a decimal exponent (`e9`/`E9`). A fractional byte count
//! is rounded up, and the result up again to the volume's 4096-byte sectors,
//! as kubelet rounds a request up rather than shrinking it.

/// The smallest and largest volume (ferry_volume's range).
pub const MIN_BYTES: u64 = 1 << 30;
/// See [`MIN_BYTES`].
pub const MAX_BYTES: u64 = 200 << 30;

const SECTOR: u64 = 4096;

/// Why a size attribute was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a Kubernetes quantity.
    #[error("size {0:?} is not a Kubernetes quantity (e.g. 20Gi, 1G, 5e9)")]
    Syntax(String),
    /// Outside 1Gi..=200Gi.
    #[error("size {0:?} is outside 1Gi..200Gi")]
    Range(String),
}

/// Parses a quantity into a volume size in bytes (a multiple of 4096, 1Gi..=200Gi).
pub fn parse_volume_size(s: &str) -> Result<u64, QuantityError> {
    let bytes = parse_bytes(s)?;
    let rounded = bytes
        .checked_next_multiple_of(u128::from(SECTOR))
        .ok_or_else(|| QuantityError::Range(s.into()))?;
    match u64::try_from(rounded) {
        Ok(b) if (MIN_BYTES..=MAX_BYTES).contains(&b) => Ok(b),
        _ => Err(QuantityError::Range(s.into())),
    }
}

/// The quantity in whole bytes (rounded up), wide enough not to overflow
/// for any quantity of up to 30 digits and an `E` suffix.
fn parse_bytes(s: &str) -> Result<u128, QuantityError> {
    let syntax = || QuantityError::Syntax(s.into());
    let t = s.strip_prefix('+').unwrap_or(s);
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(num_end);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') || int.len() + frac.len() > 30 {
        return Err(syntax());
    }
    // value = digits / 10^frac_len * 2^bin * 10^dec
    let digits: u128 = format!("{int}{frac}").parse().map_err(|_| syntax())?;
    let (bin, dec): (u32, i64) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        e if e.starts_with(['e', 'E']) => {
            let exp: i64 = e[1..].parse().map_err(|_| syntax())?;
            if !(-30..=30).contains(&exp) {
                return Err(syntax());
            }
            (0, exp)
        }
        _ => return Err(syntax()),
    };
    let scale = dec - frac.len() as i64;
    let big = |_| QuantityError::Range(s.into());
    let mut v = digits.checked_mul(1u128 << bin).ok_or(()).map_err(big)?;
    if scale >= 0 {
        let p = 10u128.checked_pow(scale as u32).ok_or(()).map_err(big)?;
        v = v.checked_mul(p).ok_or(()).map_err(big)?;
    } else {
        let p = 10u128.checked_pow((-scale) as u32).ok_or(()).map_err(big)?;
        v = v.div_ceil(p);
    }
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn binary_decimal_and_exponent_forms() {
        assert_eq!(parse_volume_size("20Gi").unwrap(), 20 << 30);
        assert_eq!(parse_volume_size("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_volume_size("200Gi").unwrap(), 200 << 30);
        assert_eq!(parse_volume_size("1024Mi").unwrap(), 1 << 30);
        assert_eq!(parse_volume_size("0.125Ti").unwrap(), 128 << 30);
        assert_eq!(parse_volume_size("1.5Gi").unwrap(), 3 << 29);
        // 2G = 2e9 bytes, rounded up to whole 4096-byte sectors.
        assert_eq!(parse_volume_size("2G").unwrap(), 2_000_003_072);
        assert_eq!(parse_volume_size("2e9").unwrap(), 2_000_003_072);
        assert_eq!(parse_volume_size("2000000000").unwrap(), 2_000_003_072);
        assert_eq!(parse_volume_size("+4Gi").unwrap(), 4 << 30);
        assert_eq!(parse_volume_size("1073741824").unwrap(), 1 << 30);
    }

    #[test]
    fn range_is_1gi_to_200gi() {
        for s in ["1023Mi", "1G", "201Gi", "0", "1Ei", "0.1Gi"] {
            assert!(
                matches!(parse_volume_size(s), Err(QuantityError::Range(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn syntax_errors_are_refused_not_panicking() {
        for s in [
            "",
            "Gi",
            "-1Gi",
            "20GB",
            "20gi",
            "1.2.3Gi",
            "20 Gi",
            "1e",
            "1e99",
            "ten",
            ".",
            "20Gix",
            "1m",
            "99999999999999999999999999999999Gi",
        ] {
            assert!(
                matches!(parse_volume_size(s), Err(QuantityError::Syntax(_))),
                "{s}"
            );
        }
    }
}
