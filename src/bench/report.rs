//! What a run reports: the verdict on itself (valid or not, and why), the
//! wrk-like summary, the JSON (schema in `docs/BENCH.md`), and `compare`
//! for CI.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::cli::{Common, CompareArgs};
use super::hist::{self, quantile as q, spectrum};
use super::kind::{self, Kind, Outcome};
use super::procstat::{self, Environment};
use super::run::Merged;
use super::text::{fmt_bytes, fmt_ns, percents};

/// A generator thread on CPU this share of the run was the bottleneck.
pub const BUSY_LIMIT: f64 = 0.95;
/// A generator thread that waited for a CPU this share of the run shared
/// its core with something else: the figures describe the machine.
pub const WAIT_LIMIT: f64 = 0.10;
/// Open loop: a p99 schedule lag above this (ns) means the generator
/// could not keep its schedule.
pub const LAG_LIMIT_NS: u64 = 5_000_000;
/// The JSON schema's name and version.
pub const SCHEMA: &str = "reactor-bench/1";

/// A finished run and everything needed to report it.
#[derive(Debug)]
pub struct Report {
    /// echo, http, udp, chat, connect or idle.
    pub workload: &'static str,
    /// The server, as given.
    pub target: String,
    /// The workload's own settings (size, depth, ...).
    pub config: Value,
    /// Connections.
    pub conns: usize,
    /// Threads.
    pub threads: usize,
    /// Open loop: the total rate asked for.
    pub rate: Option<f64>,
    /// Warmup (s).
    pub warmup_s: f64,
    /// `--pid` (several: their figures added up).
    pub pid: Vec<u32>,
    /// `--busy-poll`.
    pub busy_poll: bool,
    /// The measurements.
    pub m: Merged,
    /// The machine.
    pub env: Environment,
    /// Reasons the result is not to be trusted (empty: valid).
    pub invalid: Vec<String>,
    /// Things worth knowing that do not invalidate it.
    pub notes: Vec<String>,
    /// A workload's own figures beyond requests and latency (the game's
    /// tick jitter, snapshot sizes, loss): lines of the summary, and
    /// `workload_figures` in the JSON (null for the others).
    pub figures: Option<(String, Value)>,
}

impl Report {
    /// Builds the report and judges the run.
    pub fn new(
        workload: &'static str,
        target: String,
        config: Value,
        c: &Common,
        conns: usize,
        m: Merged,
    ) -> Report {
        let mut r = Report {
            workload,
            target,
            config,
            conns,
            threads: m.thread_busy.len(),
            rate: c.rate,
            warmup_s: c.warmup.as_secs_f64(),
            pid: c.pid.clone(),
            busy_poll: c.busy_poll,
            m,
            env: procstat::environment(),
            invalid: Vec::new(),
            notes: Vec::new(),
            figures: None,
        };
        r.judge();
        r
    }

    /// Decides whether the generator, not the server, set the pace.
    fn judge(&mut self) {
        for (i, &b) in self.m.thread_busy.iter().enumerate() {
            if b >= BUSY_LIMIT {
                self.invalid.push(format!(
                    "generator thread {i} was on CPU {:.0}% of the run: it may have set the pace, not the server (add --threads or lower the load)",
                    b * 100.0
                ));
            }
        }
        for (i, &w) in self.m.thread_wait.iter().enumerate() {
            if w >= WAIT_LIMIT {
                self.invalid.push(format!(
                    "generator thread {i} waited for a CPU {:.0}% of the run: its core was shared with other work",
                    w * 100.0
                ));
            }
        }
        let lag = &self.m.rec.lag;
        if self.rate.is_some() && !lag.is_empty() && lag.value_at_quantile(0.99) > LAG_LIMIT_NS {
            self.invalid.push(format!(
                "the generator ran late against its schedule: p99 lag {} (limit {})",
                fmt_ns(lag.value_at_quantile(0.99)),
                fmt_ns(LAG_LIMIT_NS)
            ));
        }
        let dropped = self
            .m
            .rec
            .extra
            .get("generator_dropped")
            .copied()
            .unwrap_or(0);
        if dropped > 0 {
            self.invalid.push(format!(
                "the generator's own sockets dropped {dropped} replies (their receive buffers were full): part of the loss is the generator's, not the server's"
            ));
        }
        if self.m.rec.requests == 0 && self.workload != "idle" {
            self.invalid
                .push("no request completed: there is no throughput or latency to report".into());
        }
        if self.m.rec.unsent > 0 {
            self.notes.push(format!(
                "{} scheduled requests were never sent: every connection was busy (the server was slower than --rate; add connections or depth)",
                self.m.rec.unsent
            ));
        }
        if let Some(rate) = self.rate {
            let got = self.requests_per_sec();
            if got < rate * 0.95 && self.workload != "idle" {
                self.notes
                    .push(format!("achieved {got:.0} req/s of the {rate:.0} asked"));
            }
        }
    }

    /// Requests answered within the window, per second of it.
    pub fn requests_per_sec(&self) -> f64 {
        self.m.rec.in_window as f64 / self.m.window_s.max(1e-9)
    }

    /// True if nothing invalidated the run.
    pub fn valid(&self) -> bool {
        self.invalid.is_empty()
    }

    /// Server CPU seconds over the window, if sampled.
    fn server_cpu(&self) -> Option<f64> {
        self.m.server.map(|(a, b)| (b.cpu_s - a.cpu_s).max(0.0))
    }
}

/// The percentiles reported everywhere.
pub const PCTS: [(&str, f64); 6] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p999", 0.999),
    ("p9999", 0.9999),
    ("max", 1.0),
];

/// One line of percentiles.
fn pct_line(name: &str, h: &Histogram<u64>) -> String {
    let mut s = format!("  {name:<9}");
    for (_, p) in PCTS {
        let _ = write!(s, "{:>10}", fmt_ns(q(h, p)));
    }
    let _ = write!(s, "{:>10}", fmt_ns(h.mean() as u64));
    s
}

/// The summary printed at the end, wrk-like.
pub fn summary(r: &Report) -> String {
    let rec = &r.m.rec;
    let mut s = String::new();
    let model = match r.rate {
        Some(rate) => format!("open loop {rate:.0}/s"),
        None => "closed loop".into(),
    };
    let _ = writeln!(
        s,
        "reactor bench {} {}: {} connections, {} thread(s), {}{}, {:.2}s measured{}",
        r.workload,
        r.target,
        r.conns,
        r.threads,
        model,
        if r.busy_poll { ", busy-polling" } else { "" },
        r.m.window_s,
        if r.warmup_s > 0.0 {
            format!(" after {:.1}s warmup", r.warmup_s)
        } else {
            String::new()
        }
    );
    if r.workload != "idle" {
        let mut head = format!("  {:<9}", "latency");
        for (name, _) in PCTS {
            let _ = write!(head, "{name:>10}");
        }
        let _ = writeln!(s, "{head}{:>10}", "mean");
        let _ = writeln!(s, "{}", pct_line("total", &rec.latency));
        let _ = writeln!(s, "{}", pct_line("service", &rec.service));
        for (name, h) in &rec.split {
            let _ = writeln!(s, "{}", pct_line(name, h));
        }
        if r.rate.is_some() {
            let _ = writeln!(s, "{}", pct_line("sched-lag", &rec.lag));
        }
        // Connecting and handshaking, apart from the requests (keep-alive:
        // the connections' setup; --close and connect: every cycle's).
        if !rec.connect.is_empty() {
            let _ = writeln!(s, "{}", pct_line("connect", &rec.connect));
        }
        if !rec.handshake.is_empty() {
            let _ = writeln!(s, "{}", pct_line("handshake", &rec.handshake));
        }
        let _ = writeln!(
            s,
            "  {} requests in {:.2}s, {} sent, {} received",
            rec.requests,
            r.m.window_s,
            fmt_bytes(rec.bytes_out as f64),
            fmt_bytes(rec.bytes_in as f64)
        );
        let _ = writeln!(
            s,
            "Requests/sec: {:.2}   Transfer/sec: {} in, {} out",
            r.requests_per_sec(),
            fmt_bytes(rec.bytes_in as f64 / r.m.window_s),
            fmt_bytes(rec.bytes_out as f64 / r.m.window_s)
        );
    }
    let mut errs = format!("Errors: {}", rec.errors.total());
    if rec.errors.total() > 0 {
        let parts: Vec<String> = Kind::ALL
            .iter()
            .filter(|k| rec.errors.get(**k) > 0)
            .map(|k| format!("{k} {}", rec.errors.get(*k)))
            .collect();
        let _ = write!(errs, " ({})", parts.join(", "));
    }
    let _ = writeln!(s, "{errs}");
    let codes = status_codes(&rec.statuses[..]);
    if !codes.is_empty() {
        let bad = rec.status_errors.iter().sum::<u64>();
        let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c} x{n}")).collect();
        let errs = if bad > 0 {
            format!(" ({bad} counted as errors)")
        } else {
            String::new()
        };
        let _ = writeln!(s, "  status codes: {}{errs}", list.join(", "));
    }
    for (k, v) in &rec.extra {
        let _ = writeln!(s, "  {k}: {v}");
    }
    if let Some(p) = &rec.tls_params {
        let _ = writeln!(s, "  tls: {p}");
    }
    if let Some((text, _)) = &r.figures {
        s.push_str(text);
    }
    if let (false, Some((a, b))) = (r.pid.is_empty(), r.m.server) {
        let cpu = r.server_cpu().unwrap_or(0.0);
        let pids: Vec<String> = r.pid.iter().map(u32::to_string).collect();
        let who = match pids.len() {
            1 => format!("Server pid {}", pids[0]),
            _ => format!("Servers, pids {} together", pids.join(", ")),
        };
        let _ = write!(
            s,
            "{who}: {cpu:.2} CPU-s ({:.0}% of a core), RSS {} -> {}",
            100.0 * cpu / r.m.server_window_s.max(1e-9),
            fmt_bytes(a.rss as f64),
            fmt_bytes(b.rss as f64)
        );
        if cpu > 0.0 && r.workload != "idle" {
            let _ = write!(
                s,
                ", {:.0} requests per server CPU-second",
                rec.in_window as f64 / cpu
            );
        }
        let _ = writeln!(s);
    }
    let _ = write!(
        s,
        "Generator: CPU per thread {}; waiting for a CPU {}",
        percents(&r.m.thread_busy),
        percents(&r.m.thread_wait)
    );
    if r.m.thread_spin.iter().any(|&f| f >= 0.005) {
        let spin = percents(&r.m.thread_spin);
        let _ = write!(s, "; spinning idle (not counted as busy) {spin}");
    }
    let _ = writeln!(s);
    for n in &r.notes {
        let _ = writeln!(s, "Note: {n}");
    }
    if r.valid() {
        let _ = writeln!(s, "Verdict: valid");
    } else {
        for why in &r.invalid {
            let _ = writeln!(s, "INVALID: {why}");
        }
    }
    s
}

/// The status codes seen, with their counts, in order.
fn status_codes(counts: &[u64]) -> Vec<(usize, u64)> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| (c, *n))
        .collect()
}

/// Status code counts as a JSON object (`{"200": 9000}`).
fn codes_json(counts: &[u64]) -> Value {
    let m: serde_json::Map<String, Value> = status_codes(counts)
        .into_iter()
        .map(|(c, n)| (c.to_string(), json!(n)))
        .collect();
    Value::Object(m)
}

/// Percentiles of `h` in µs, as JSON; null if it holds nothing.
fn pct_json_or_null(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        Value::Null
    } else {
        pct_json(h)
    }
}

/// Percentiles of `h` in µs, as JSON.
pub fn pct_json(h: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    for (name, p) in PCTS {
        m.insert(name.into(), json!(q(h, p) as f64 / 1e3));
    }
    m.insert("mean".into(), json!(h.mean() / 1e3));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

/// Chat in one room, per line: `line_deliveries` (`[sender, sequence,
/// deliveries, last delivery's latency in us]` a line) and
/// `last_delivery_us`, the percentiles over the lines of the time until
/// each line's last delivery; both null without lines.
pub fn lines_json(lines: &std::collections::BTreeMap<(u64, u64), (u64, u64)>) -> (Value, Value) {
    if lines.is_empty() {
        return (Value::Null, Value::Null);
    }
    let mut h = hist::histogram();
    let rows: Vec<Value> = lines
        .iter()
        .map(|(&(s, q), &(n, last))| {
            h.saturating_record(last);
            json!([s, q, n, last as f64 / 1e3])
        })
        .collect();
    (Value::Array(rows), pct_json(&h))
}

/// The whole result as JSON (see docs/BENCH.md).
pub fn to_json(r: &Report) -> Value {
    let rec = &r.m.rec;
    let mut errors = serde_json::Map::new();
    for k in Kind::ALL {
        errors.insert(k.name().into(), json!(rec.errors.get(k)));
    }
    let series: Vec<Value> =
        r.m.series
            .iter()
            .map(|s| {
                json!({
                    "t": s.sec + 1, "warmup": s.warmup, "requests": s.requests,
                    "bytes_in": s.bytes_in, "bytes_out": s.bytes_out, "errors": s.errors,
                    "p50_us": s.p50 as f64 / 1e3, "p99_us": s.p99 as f64 / 1e3,
                    "max_us": s.max as f64 / 1e3, "server_cpu": s.server_cpu,
                    "latency_hdr": s.hdr,
                })
            })
            .collect();
    let server = match (r.pid.first(), r.m.server) {
        (Some(pid), Some((a, b))) => {
            let cpu = r.server_cpu().unwrap_or(0.0);
            json!({
                "pid": pid, "pids": r.pid, "cpu_s": cpu,
                "cpu_util": cpu / r.m.server_window_s.max(1e-9),
                "requests_per_cpu_sec": if cpu > 0.0 { Some(rec.in_window as f64 / cpu) } else { None },
                "rss_start_bytes": a.rss, "rss_end_bytes": b.rss,
                "rss_growth_per_conn_bytes": (b.rss as f64 - a.rss as f64) / r.conns.max(1) as f64,
            })
        }
        _ => Value::Null,
    };
    let split = |f: &dyn Fn(&Histogram<u64>) -> Value| -> Value {
        match rec.split.is_empty() {
            true => Value::Null,
            false => rec
                .split
                .iter()
                .map(|(n, h)| ((*n).to_string(), f(h)))
                .collect(),
        }
    };
    json!({
        "schema": SCHEMA,
        "workload": r.workload,
        "target": r.target,
        "valid": r.valid(),
        "invalid_reasons": r.invalid,
        "notes": r.notes,
        "requests_per_sec": r.requests_per_sec(),
        "errors": rec.errors.total(),
        "latency_us": pct_json(&rec.latency),
        "service_time_us": pct_json(&rec.service),
        "latency_split_us": split(&pct_json),
        "schedule_lag_us": if r.rate.is_some() { pct_json(&rec.lag) } else { Value::Null },
        "connect_time_us": pct_json_or_null(&rec.connect),
        "handshake_us": pct_json_or_null(&rec.handshake),
        "tls": rec.tls_params,
        "status_codes": codes_json(&rec.statuses[..]),
        "errors_by_status": codes_json(&rec.status_errors[..]),
        "requests": rec.requests,
        "duration_s": r.m.window_s,
        "time": {
            "zero_unix_s": r.m.zero_unix_s,
            "start_unix_s": r.m.zero_unix_s + r.warmup_s,
            "end_unix_s": r.m.zero_unix_s + r.warmup_s + r.m.window_s,
        },
        "histograms": {
            "unit": "ns", "encoding": "HdrHistogram V2 compressed, base64",
            "latency": hist::encode(&rec.latency), "service_time": hist::encode(&rec.service),
            "schedule_lag": hist::encode(&rec.lag), "connect_time": hist::encode(&rec.connect),
            "handshake": hist::encode(&rec.handshake),
            "split": split(&|h| json!(hist::encode(h))),
        },
        "bytes": { "sent": rec.bytes_out, "received": rec.bytes_in },
        "bytes_per_sec": {
            "sent": rec.bytes_out as f64 / r.m.window_s,
            "received": rec.bytes_in as f64 / r.m.window_s,
        },
        "errors_by_kind": errors,
        "unsent": rec.unsent,
        "workload_counters": rec.extra,
        "workload_figures": r.figures.as_ref().map(|f| &f.1),
        "line_deliveries": lines_json(&rec.lines).0,
        "last_delivery_us": lines_json(&rec.lines).1,
        "config": {
            "connections": r.conns, "threads": r.threads, "rate": r.rate,
            "model": if r.rate.is_some() { "open" } else { "closed" },
            "warmup_s": r.warmup_s, "busy_poll": r.busy_poll, "workload": r.config,
        },
        "environment": r.env,
        "generator": {
            "thread_cpu_busy": r.m.thread_busy, "busy_limit": BUSY_LIMIT,
            "thread_cpu_wait": r.m.thread_wait, "wait_limit": WAIT_LIMIT,
            "thread_cpu_spin": r.m.thread_spin, "thread_sleeps": r.m.thread_sleeps,
        },
        "server": server,
        "series": series,
        "spectrum": spectrum(&rec.latency)
            .into_iter()
            .map(|(p, us)| json!({"percentile": p, "latency_us": us}))
            .collect::<Vec<_>>(),
    })
}

/// Reads a result file's requests/s and p99 (µs).
fn figures(path: &std::path::Path) -> crate::Result<(f64, f64, bool)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| kind::config(format!("cannot read {}: {e}", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| kind::config(format!("{} is not JSON: {e}", path.display())))?;
    let rps = v["requests_per_sec"].as_f64();
    let p99 = v["latency_us"]["p99"].as_f64();
    match (rps, p99) {
        (Some(a), Some(b)) => Ok((a, b, v["valid"].as_bool().unwrap_or(false))),
        _ => Err(kind::config(format!(
            "{}: no requests_per_sec or latency_us.p99",
            path.display()
        ))),
    }
}

/// The verdict of `compare`: (regressed, the one-line text).
pub fn verdict(a: (f64, f64), b: (f64, f64), max: f64) -> (bool, String) {
    let drop = if a.0 > 0.0 { (a.0 - b.0) / a.0 } else { 0.0 };
    let rise = if a.1 > 0.0 { (b.1 - a.1) / a.1 } else { 0.0 };
    let bad = drop > max || rise > max;
    let text = format!(
        "{}: requests/s {:.0} -> {:.0} ({:+.1}%), p99 {:.0}us -> {:.0}us ({:+.1}%), threshold {:.1}%",
        if bad { "REGRESSION" } else { "ok" },
        a.0,
        b.0,
        -drop * 100.0,
        a.1,
        b.1,
        rise * 100.0,
        max * 100.0
    );
    (bad, text)
}

/// `reactor bench compare A B`: prints the verdict; a regression is
/// `Outcome::Regression` (exit code 1).
pub fn compare(args: &CompareArgs) -> crate::Result<Outcome> {
    let (ar, ap, av) = figures(&args.a)?;
    let (br, bp, bv) = figures(&args.b)?;
    let (bad, text) = verdict((ar, ap), (br, bp), args.max_regression);
    println!("{text}");
    if !av || !bv {
        println!("warning: at least one result is marked invalid (see its invalid_reasons)");
    }
    Ok(if bad {
        Outcome::Regression
    } else {
        Outcome::Done
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert!(!verdict((100.0, 10.0), (96.0, 10.4), 0.05).0);
        assert!(verdict((100.0, 10.0), (94.0, 10.0), 0.05).0);
        assert!(verdict((100.0, 10.0), (100.0, 11.0), 0.05).0);
        assert!(!verdict((100.0, 10.0), (150.0, 5.0), 0.05).0);
    }
}
