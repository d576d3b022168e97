//! Durations and sizes as people type them on a command line (`300ms`,
//! `2m`, `64k`): the parsers `reactor serve` and `reactor bench` share.

use std::time::Duration;

/// Parses a duration: plain seconds (`5`, `1.5`) or with a unit
/// (`300ms`, `5s`, `2m`, `1h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (try 5, 5s, 300ms, 2m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("'{s}' is not a duration (it must be >= 0)"));
    }
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{s}': {e}"))
}

/// Parses a size in bytes: `4096`, `64k`, `1m` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.strip_suffix(['k', 'm', 'g']) {
        Some(n) => (
            n,
            match lower.as_bytes()[lower.len() - 1] {
                b'k' => 1usize << 10,
                b'm' => 1 << 20,
                _ => 1 << 30,
            },
        ),
        None => (lower.as_str(), 1),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (try 4096, 64k, 1m)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}
