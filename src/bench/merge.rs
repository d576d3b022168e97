//! `reactor bench merge A.json B.json ...`: runs made at the same time by
//! several generators (on several machines, say) as one: throughputs and
//! counts summed, latency histograms merged (so the percentiles are those
//! of every request, not an average of percentiles), each generator's
//! verdict kept, and a warning when the runs' windows do not line up, for
//! then their throughputs do not add up to a rate anything sustained.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::cli::MergeArgs;
use super::hist::{self, histogram, quantile};
use super::kind::{self, Kind, Outcome};
use super::plot::{self, Chart};
use super::report::{PCTS, SCHEMA, lines_json, pct_json};
use super::run::Second;
use super::text::fmt_ns;

/// Windows whose starts (or lengths) differ by more than this share of
/// the shortest window, and at least [`SKEW_MIN_S`], are not one window.
const SKEW_SHARE: f64 = 0.05;
/// The smallest difference (s) worth a warning: clocks and process starts
/// are never closer than this anyway.
const SKEW_MIN_S: f64 = 0.5;

/// One run's result, as read back.
#[derive(Debug)]
struct Run {
    /// The file it came from.
    file: String,
    /// The whole JSON.
    v: Value,
    /// Its histograms, by JSON name.
    hists: Vec<(&'static str, Histogram<u64>)>,
    /// Its latency's parts (`histograms.split`: chat over several
    /// servers), by name; empty if it has none.
    split: Vec<(String, Histogram<u64>)>,
}

/// The histograms a result carries (JSON name under `histograms`, and
/// the key of its percentiles).
const HISTS: [(&str, &str); 5] = [
    ("latency", "latency_us"),
    ("service_time", "service_time_us"),
    ("schedule_lag", "schedule_lag_us"),
    ("connect_time", "connect_time_us"),
    ("handshake", "handshake_us"),
];

/// Reads one result file.
fn read(path: &Path) -> crate::Result<Run> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| kind::config(format!("cannot read {shown}: {e}")))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| kind::config(format!("{shown} is not JSON: {e}")))?;
    if v["schema"] != SCHEMA {
        return Err(kind::config(format!("{shown}: not a {SCHEMA} result")));
    }
    let mut hists = Vec::new();
    for (name, _) in HISTS {
        let Some(text) = v["histograms"][name].as_str() else {
            return Err(kind::config(format!(
                "{shown}: no histograms.{name} (written by an older reactor bench?)"
            )));
        };
        let h = hist::decode(text).map_err(|e| kind::config(format!("{shown}: {name}: {e}")))?;
        hists.push((name, h));
    }
    let mut split = Vec::new();
    for (name, text) in v["histograms"]["split"].as_object().into_iter().flatten() {
        let text = text.as_str().unwrap_or("");
        let h =
            hist::decode(text).map_err(|e| kind::config(format!("{shown}: split {name}: {e}")))?;
        split.push((name.clone(), h));
    }
    Ok(Run {
        file: shown.to_string(),
        v,
        hists,
        split,
    })
}

/// A number at `path` (keys) in `v`, 0 if absent.
fn num(v: &Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, k| &v[k]).as_f64().unwrap_or(0.0)
}

/// Adds the numbers of object `from` into `into`, key by key.
fn add_counts(into: &mut serde_json::Map<String, Value>, from: &Value) {
    for (k, n) in from.as_object().into_iter().flatten() {
        let sum = into.get(k).and_then(Value::as_f64).unwrap_or(0.0) + n.as_f64().unwrap_or(0.0);
        into.insert(k.clone(), json!(sum as u64));
    }
}

/// Warnings about windows that do not line up.
fn skew_warnings(runs: &[Run]) -> Vec<String> {
    let starts: Vec<f64> = runs
        .iter()
        .map(|r| num(&r.v, &["time", "start_unix_s"]))
        .collect();
    let lens: Vec<f64> = runs.iter().map(|r| num(&r.v, &["duration_s"])).collect();
    let shortest = lens.iter().copied().fold(f64::INFINITY, f64::min);
    let limit = (shortest * SKEW_SHARE).max(SKEW_MIN_S);
    let spread = |xs: &[f64]| {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        hi - lo
    };
    let mut w = Vec::new();
    if spread(&starts) > limit {
        w.push(format!(
            "the windows start {:.2} s apart (more than {limit:.2} s): the runs were not simultaneous, or the machines' clocks disagree; their throughputs do not add up to one rate",
            spread(&starts)
        ));
    }
    if spread(&lens) > limit {
        w.push(format!(
            "the windows last from {shortest:.2} s to {:.2} s: the sum of throughputs holds only where they overlap",
            shortest + spread(&lens)
        ));
    }
    let workloads: Vec<&str> = runs
        .iter()
        .filter_map(|r| r.v["workload"].as_str())
        .collect();
    if workloads.windows(2).any(|p| p[0] != p[1]) {
        w.push(format!(
            "the runs are of different workloads: {}",
            workloads.join(", ")
        ));
    }
    w
}

/// The per-second series of all runs, second by second (second k of
/// each run, from its own time zero), latency histograms merged.
fn merged_series(runs: &[Run]) -> crate::Result<Vec<Second>> {
    let mut out: Vec<(Second, Histogram<u64>)> = Vec::new();
    for r in runs {
        for (i, s) in r.v["series"].as_array().into_iter().flatten().enumerate() {
            while out.len() <= i {
                let sec = out.len() as u32;
                out.push((empty_second(sec), histogram()));
            }
            let (acc, h) = &mut out[i];
            acc.warmup |= s["warmup"].as_bool().unwrap_or(false);
            acc.requests += num(s, &["requests"]) as u64;
            acc.bytes_in += num(s, &["bytes_in"]) as u64;
            acc.bytes_out += num(s, &["bytes_out"]) as u64;
            acc.errors += num(s, &["errors"]) as u64;
            if let Some(text) = s["latency_hdr"].as_str() {
                let one = hist::decode(text)
                    .map_err(|e| kind::config(format!("{}: series {i}: {e}", r.file)))?;
                hist::merge_into(h, &one);
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(mut s, h)| {
            s.p50 = h.value_at_quantile(0.5);
            s.p99 = h.value_at_quantile(0.99);
            s.max = h.max();
            s.hdr = hist::encode(&h);
            s
        })
        .collect())
}

/// A second with nothing in it.
fn empty_second(sec: u32) -> Second {
    Second {
        sec,
        warmup: false,
        requests: 0,
        bytes_in: 0,
        bytes_out: 0,
        errors: 0,
        p50: 0,
        p99: 0,
        max: 0,
        len_ns: 1_000_000_000,
        hdr: String::new(),
        server_cpu: None,
    }
}

/// The merged result, in the schema of one run plus `merged_from`.
fn merged_json(
    runs: &[Run],
    hists: &[(&'static str, Histogram<u64>)],
    split: &BTreeMap<String, Histogram<u64>>,
    series: &[Second],
) -> Value {
    let sum = |path: &[&str]| runs.iter().map(|r| num(&r.v, path)).sum::<f64>();
    let mut counts = [
        serde_json::Map::new(),
        serde_json::Map::new(),
        serde_json::Map::new(),
    ];
    let mut errors = serde_json::Map::new();
    for r in runs {
        add_counts(&mut errors, &r.v["errors_by_kind"]);
        add_counts(&mut counts[0], &r.v["status_codes"]);
        add_counts(&mut counts[1], &r.v["errors_by_status"]);
        add_counts(&mut counts[2], &r.v["workload_counters"]);
    }
    let valid = runs.iter().all(|r| r.v["valid"] == true);
    let reasons: Vec<String> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let why = r.v["invalid_reasons"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            why.into_iter()
                .map(move |w| format!("run {} ({}): {}", i + 1, r.file, w.as_str().unwrap_or("")))
        })
        .collect();
    let mut out = json!({
        "schema": SCHEMA,
        "workload": runs[0].v["workload"],
        "target": runs.iter().map(|r| r.v["target"].clone()).collect::<Vec<_>>(),
        "valid": valid,
        "invalid_reasons": reasons,
        "notes": skew_warnings(runs),
        "requests_per_sec": sum(&["requests_per_sec"]),
        "errors": sum(&["errors"]) as u64,
        "errors_by_kind": errors,
        "requests": sum(&["requests"]) as u64,
        "duration_s": runs.iter().map(|r| num(&r.v, &["duration_s"])).fold(0.0, f64::max),
        "time": {
            "start_unix_s": runs.iter().map(|r| num(&r.v, &["time", "start_unix_s"])).fold(f64::INFINITY, f64::min),
            "end_unix_s": runs.iter().map(|r| num(&r.v, &["time", "end_unix_s"])).fold(0.0, f64::max),
        },
        "bytes": { "sent": sum(&["bytes", "sent"]) as u64, "received": sum(&["bytes", "received"]) as u64 },
        "bytes_per_sec": { "sent": sum(&["bytes_per_sec", "sent"]), "received": sum(&["bytes_per_sec", "received"]) },
        "unsent": sum(&["unsent"]) as u64,
        "status_codes": counts[0],
        "errors_by_status": counts[1],
        "workload_counters": counts[2],
        "merged_from": runs.iter().map(|r| json!({
            "file": r.file, "target": r.v["target"], "requests_per_sec": r.v["requests_per_sec"],
            "valid": r.v["valid"], "invalid_reasons": r.v["invalid_reasons"], "time": r.v["time"],
            "duration_s": r.v["duration_s"], "generator": r.v["generator"], "server": r.v["server"],
            "environment": r.v["environment"], "config": r.v["config"],
        })).collect::<Vec<_>>(),
    });
    let mut encoded = serde_json::Map::new();
    encoded.insert("unit".into(), json!("ns"));
    encoded.insert(
        "encoding".into(),
        json!("HdrHistogram V2 compressed, base64"),
    );
    for ((name, key), (_, h)) in HISTS.iter().zip(hists) {
        out[*key] = if h.is_empty() {
            Value::Null
        } else {
            pct_json(h)
        };
        encoded.insert((*name).into(), json!(hist::encode(h)));
    }
    if split.is_empty() {
        encoded.insert("split".into(), Value::Null);
        out["latency_split_us"] = Value::Null;
    } else {
        let e = split
            .iter()
            .map(|(n, h)| (n.clone(), json!(hist::encode(h))));
        encoded.insert("split".into(), e.collect());
        let p = split.iter().map(|(n, h)| (n.clone(), pct_json(h)));
        out["latency_split_us"] = p.collect();
    }
    out["histograms"] = Value::Object(encoded);
    // Chat in one room over several processes: each line's deliveries
    // added up, and its last delivery the latest of any process's.
    let lines = merged_lines(runs);
    let (rows, last) = lines_json(&lines);
    out["line_deliveries"] = rows;
    out["last_delivery_us"] = last;
    out["series"] = series
        .iter()
        .map(|s| {
            json!({
                "t": s.sec + 1, "warmup": s.warmup, "requests": s.requests,
                "bytes_in": s.bytes_in, "bytes_out": s.bytes_out, "errors": s.errors,
                "p50_us": s.p50 as f64 / 1e3, "p99_us": s.p99 as f64 / 1e3,
                "max_us": s.max as f64 / 1e3, "latency_hdr": s.hdr,
            })
        })
        .collect();
    out["spectrum"] = hist::spectrum(&hists[0].1)
        .into_iter()
        .map(|(p, us)| json!({"percentile": p, "latency_us": us}))
        .collect();
    out
}

/// The runs' `line_deliveries`, by (sender, sequence): deliveries
/// summed, the last delivery's latency the largest (ns).
fn merged_lines(runs: &[Run]) -> BTreeMap<(u64, u64), (u64, u64)> {
    let mut lines = BTreeMap::new();
    for r in runs {
        for row in r.v["line_deliveries"].as_array().into_iter().flatten() {
            let n = |i: usize| row[i].as_f64().unwrap_or(0.0);
            let e = lines.entry((n(0) as u64, n(1) as u64)).or_insert((0, 0));
            e.0 += n(2) as u64;
            e.1 = e.1.max((n(3) * 1e3) as u64);
        }
    }
    lines
}

/// The merge's summary.
fn summary(
    runs: &[Run],
    v: &Value,
    latency: &Histogram<u64>,
    split: &BTreeMap<String, Histogram<u64>>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "reactor bench merge: {} runs of {}",
        runs.len(),
        v["workload"].as_str().unwrap_or("?")
    );
    for (i, r) in runs.iter().enumerate() {
        let verdict = match r.v["valid"].as_bool() {
            Some(true) => "valid".to_string(),
            _ => {
                let why: Vec<&str> = r.v["invalid_reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!("INVALID: {}", why.join("; "))
            }
        };
        let _ = writeln!(
            s,
            "  run {} {}: {} {:.2} req/s over {:.2}s from {:.3}; {verdict}",
            i + 1,
            r.file,
            r.v["target"].as_str().unwrap_or("?"),
            num(&r.v, &["requests_per_sec"]),
            num(&r.v, &["duration_s"]),
            num(&r.v, &["time", "start_unix_s"]),
        );
    }
    let mut head = format!("  {:<9}", "latency");
    let mut line = format!("  {:<9}", "merged");
    for (name, p) in PCTS {
        let _ = write!(head, "{name:>10}");
        let _ = write!(line, "{:>10}", fmt_ns(quantile(latency, p)));
    }
    let _ = writeln!(s, "{head}{:>10}", "mean");
    let _ = writeln!(s, "{line}{:>10}", fmt_ns(latency.mean() as u64));
    for (name, h) in split {
        let mut line = format!("  {name:<9}");
        for (_, p) in PCTS {
            let _ = write!(line, "{:>10}", fmt_ns(quantile(h, p)));
        }
        let _ = writeln!(s, "{line}{:>10}", fmt_ns(h.mean() as u64));
    }
    let _ = writeln!(
        s,
        "  {} requests in all",
        v["requests"].as_u64().unwrap_or(0)
    );
    let w = &v["workload_counters"];
    if let Some(members) = w["members"].as_u64() {
        let _ = writeln!(
            s,
            "  members: {members}, of them heard a measured line: {}; deliveries owed {}, lost {}",
            w["members_heard"].as_u64().unwrap_or(0),
            w["deliveries_owed"].as_u64().unwrap_or(0),
            w["lost"].as_u64().unwrap_or(0),
        );
    }
    if let Some(rows) = v["line_deliveries"].as_array() {
        let members = w["members"].as_u64().unwrap_or(0);
        let whole = rows
            .iter()
            .filter(|r| r[2].as_u64().unwrap_or(0) + 1 >= members)
            .count();
        let last = &v["last_delivery_us"];
        let us = |k: &str| fmt_ns((last[k].as_f64().unwrap_or(0.0) * 1e3) as u64);
        let _ = writeln!(
            s,
            "  one room: {} lines, {whole} of them delivered to every other member; until the last delivery p50 {} p99 {} max {}",
            rows.len(),
            us("p50"),
            us("p99"),
            us("max"),
        );
    }
    let _ = writeln!(
        s,
        "Requests/sec: {:.2} (the sum)",
        num(v, &["requests_per_sec"])
    );
    let mut errs = format!("Errors: {}", v["errors"].as_u64().unwrap_or(0));
    let parts: Vec<String> = Kind::ALL
        .iter()
        .filter_map(|k| {
            let n = v["errors_by_kind"][k.name()].as_u64().unwrap_or(0);
            (n > 0).then(|| format!("{k} {n}"))
        })
        .collect();
    if !parts.is_empty() {
        let _ = write!(errs, " ({})", parts.join(", "));
    }
    let _ = writeln!(s, "{errs}");
    for w in v["notes"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "Warning: {}", w.as_str().unwrap_or(""));
    }
    if v["valid"] == true {
        let _ = writeln!(s, "Verdict: valid (every generator's)");
    } else {
        for why in v["invalid_reasons"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "INVALID: {}", why.as_str().unwrap_or(""));
        }
    }
    s
}

/// `reactor bench merge`: reads the results, prints the merge, writes
/// `--json` and `--plot`.
pub fn merge(a: &MergeArgs) -> crate::Result<Outcome> {
    let runs = a
        .files
        .iter()
        .map(|f| read(f))
        .collect::<crate::Result<Vec<_>>>()?;
    let mut hists: Vec<(&'static str, Histogram<u64>)> =
        HISTS.iter().map(|(n, _)| (*n, histogram())).collect();
    for r in &runs {
        for ((_, into), (_, from)) in hists.iter_mut().zip(&r.hists) {
            hist::merge_into(into, from);
        }
    }
    let mut split: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for (name, h) in runs.iter().flat_map(|r| &r.split) {
        hist::merge_into(split.entry(name.clone()).or_insert_with(histogram), h);
    }
    let series = merged_series(&runs)?;
    let v = merged_json(&runs, &hists, &split, &series);
    print!("{}", summary(&runs, &v, &hists[0].1, &split));
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| kind::io("cannot encode the JSON", e.into()))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| kind::io(format_args!("cannot write {}", path.display()), e))?;
    }
    if let Some(path) = &a.plot {
        let chart = Chart {
            title: format!(
                "reactor bench merge ({} runs): {:.0} req/s{}",
                runs.len(),
                num(&v, &["requests_per_sec"]),
                if v["valid"] == true { "" } else { " (INVALID)" }
            ),
            latency: &hists[0].1,
            series: &series,
        };
        std::fs::write(path, plot::svg(&chart))
            .map_err(|e| kind::io(format_args!("cannot write {}", path.display()), e))?;
    }
    Ok(Outcome::Done)
}
