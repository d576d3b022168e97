//! Short human forms of durations, sizes and shares, for the summary,
//! the ticker and the plot.

/// `ns` as a short human duration.
pub fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    if v < 1e3 {
        format!("{ns}ns")
    } else if v < 1e6 {
        format!("{:.0}us", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// Bytes as a short human size.
pub fn fmt_bytes(b: f64) -> String {
    if b < 1024.0 {
        format!("{b:.0}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1}KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1}MiB", b / 1048576.0)
    } else {
        format!("{:.2}GiB", b / 1073741824.0)
    }
}

/// Fractions as whole percentages, space-separated: "97% 12%".
pub fn percents(fs: &[f64]) -> String {
    let v: Vec<String> = fs.iter().map(|f| format!("{:.0}%", f * 100.0)).collect();
    v.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_short() {
        assert_eq!(fmt_ns(500), "500ns");
        assert_eq!(fmt_ns(51_000), "51us");
        assert_eq!(fmt_ns(51_000_000), "51.00ms");
    }
}
