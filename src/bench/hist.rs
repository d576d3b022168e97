//! The histograms every measurement goes into: nanoseconds, 1 µs to one
//! hour, 3 significant figures; the percentile spectrum read off them;
//! and their portable form, HdrHistogram's V2 compressed encoding in
//! base64 (the `HISTFAAA...` strings of interval logs), which the other
//! HdrHistogram implementations read and write.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};

/// Largest latency a histogram holds (one hour, in ns); larger saturate.
pub const HIGHEST_NS: u64 = 3_600_000_000_000;
/// Smallest value told apart from zero (1 µs, in ns).
pub const LOWEST_NS: u64 = 1_000;
/// Significant figures kept.
pub const SIGFIG: u8 = 3;

/// A histogram of nanoseconds, 1 µs resolution, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that satisfy the crate's preconditions.
    Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!("sigfig 3 is valid")))
}

/// A histogram's quantile; 1.0 means the max.
pub fn quantile(h: &Histogram<u64>, p: f64) -> u64 {
    if p >= 1.0 {
        h.max()
    } else {
        h.value_at_quantile(p)
    }
}

/// The latency spectrum: (percentile, µs) from p0 to p99.999 and the max.
pub fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = (0..=50)
        .map(|i| {
            let p = 1.0 - 10f64.powf(-f64::from(i) / 10.0);
            (p * 100.0, h.value_at_quantile(p) as f64 / 1e3)
        })
        .collect();
    v.push((100.0, h.max() as f64 / 1e3));
    v
}

/// `h` in HdrHistogram's V2 compressed encoding, base64.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Writing into a Vec fails only if the histogram is unencodable, which
    // ours (u64 counts, sane bounds) never are; an empty string says so.
    match V2DeflateSerializer::new().serialize(h, &mut bytes) {
        Ok(_) => STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// A histogram from [`encode`]'s form (or any HdrHistogram V2 encoding,
/// compressed or not, in base64).
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("not an HdrHistogram: {e:?}"))
}

/// Adds `from` into `into`; values beyond `into`'s range saturate.
pub fn merge_into(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_is_lossless() {
        let mut h = histogram();
        for v in [1_000u64, 1_500, 90_000, 90_001, 7_000_000, 3_000_000_000] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        let text = encode(&h);
        assert!(text.starts_with("HISTFAAA"), "{text}");
        let back = decode(&text).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert!(decode("not a histogram").is_err());
        // Merging two copies doubles every count.
        let mut sum = histogram();
        merge_into(&mut sum, &h);
        merge_into(&mut sum, &back);
        assert_eq!(sum.len(), 2 * h.len());
        assert_eq!(sum.max(), h.max());
    }
}
