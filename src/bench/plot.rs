//! `--plot FILE.svg`: two hand-drawn panels. Top: the latency percentile
//! spectrum on a 1/(1-p) axis (p50 to p99.999, then the max), log scale
//! in µs. Bottom: requests per second over time, warmup greyed.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::hist::spectrum;
use super::report::Report;
use super::run::Second;

/// What a plot shows: a title, the latency of the whole run, and the
/// per-second series.
#[derive(Debug)]
pub struct Chart<'a> {
    /// The first line: workload, target, throughput, verdict.
    pub title: String,
    /// Latency from the intended send, the whole run.
    pub latency: &'a Histogram<u64>,
    /// One entry per second.
    pub series: &'a [Second],
}

impl<'a> Chart<'a> {
    /// The chart of one run.
    pub fn of(r: &'a Report) -> Chart<'a> {
        Chart {
            title: format!(
                "reactor bench {} {}: {:.0} req/s{}",
                r.workload,
                r.target,
                r.requests_per_sec(),
                if r.valid() { "" } else { " (INVALID)" }
            ),
            latency: &r.m.rec.latency,
            series: &r.m.series,
        }
    }
}

/// Width and height of the picture, and of the margins.
const W: f64 = 800.0;
/// Height of one panel.
const PANEL: f64 = 260.0;
/// Left margin (axis labels).
const LEFT: f64 = 70.0;

/// The SVG text for chart `c`.
pub fn svg(c: &Chart<'_>) -> String {
    let mut s = String::new();
    let h = PANEL * 2.0 + 90.0;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="16" font-size="13">{}</text>"#,
        esc(&c.title)
    );
    spectrum_panel(&mut s, c.latency, 30.0);
    series_panel(&mut s, c.series, 60.0 + PANEL);
    s.push_str("</svg>\n");
    s
}

/// Escapes text for XML.
fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The latency spectrum, x = log10(1/(1-p)), y = log10(µs).
fn spectrum_panel(s: &mut String, latency: &Histogram<u64>, top: f64) {
    let pts = spectrum(latency);
    let xs: Vec<f64> = pts
        .iter()
        .map(|&(p, _)| (1.0 / (1.0 - (p / 100.0).min(0.99999))).log10())
        .collect();
    let ys: Vec<f64> = pts.iter().map(|&(_, us)| us.max(1.0).log10()).collect();
    let (ylo, yhi) = (
        ys[0].floor(),
        ys.iter()
            .cloned()
            .fold(0.0, f64::max)
            .ceil()
            .max(ys[0].floor() + 1.0),
    );
    let xmax = 5.0;
    let px = |x: f64| LEFT + x / xmax * (W - LEFT - 20.0);
    let py = |y: f64| top + PANEL - (y - ylo) / (yhi - ylo) * PANEL;
    frame(s, top, "latency by percentile (log scale)");
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            top + PANEL,
            top + PANEL + 14.0
        );
    }
    let mut y = ylo;
    while y <= yhi {
        let v = 10f64.powf(y);
        let label = if v >= 1000.0 {
            format!("{}ms", v / 1000.0)
        } else {
            format!("{v}us")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{0:.1}" text-anchor="end">{label}</text>"##,
            py(y),
            W - 20.0,
            LEFT - 4.0
        );
        y += 1.0;
    }
    let path: Vec<String> = xs
        .iter()
        .zip(&ys)
        .map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#c33" stroke-width="2" points="{}"/>"##,
        path.join(" ")
    );
}

/// Requests per second over time.
fn series_panel(s: &mut String, series: &[Second], top: f64) {
    frame(s, top, "requests per second");
    if series.is_empty() {
        return;
    }
    let ymax = series.iter().map(|x| x.requests).max().unwrap_or(1).max(1) as f64 * 1.1;
    let n = series.len() as f64;
    let bw = (W - LEFT - 20.0) / n;
    for (i, sec) in series.iter().enumerate() {
        let hgt = sec.requests as f64 / ymax * PANEL;
        let fill = if sec.warmup { "#bbb" } else { "#36c" };
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{hgt:.1}" fill="{fill}"><title>{}s: {} req/s, p99 {}us</title></rect>"#,
            LEFT + i as f64 * bw,
            top + PANEL - hgt,
            (bw - 1.0).max(0.5),
            sec.sec + 1,
            sec.requests,
            sec.p99 / 1000
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{:.0}</text><text x="{}" y="{}" text-anchor="end">0</text><text x="{}" y="{}" text-anchor="end">{}s</text>"#,
        LEFT - 4.0,
        top + 10.0,
        ymax,
        LEFT - 4.0,
        top + PANEL,
        W - 20.0,
        top + PANEL + 14.0,
        series.len()
    );
}

/// A panel's border and title.
fn frame(s: &mut String, top: f64, title: &str) {
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#888"/><text x="{LEFT}" y="{}">{title}</text>"##,
        W - LEFT - 20.0,
        top - 4.0
    );
}
