//! Timestamps. The JSON 1.1 protocol sends them as epoch seconds (a JSON
//! number with a fraction); records keep them in the same form so they
//! round-trip without conversion.

/// Seconds since the Unix epoch, millisecond precision.
pub fn now() -> f64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    // Millisecond resolution, like ECS; u128 -> f64 is exact far past 2200.
    (ms as f64) / 1000.0
}
