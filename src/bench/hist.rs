//! The histograms every measurement goes into: nanoseconds, 1 µs to one
//! hour, 3 significant figures, and the percentile spectrum read off them.

use hdrhistogram::Histogram;

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
