//! The real binary as a server under test: start it with `--http` on for
//! `/stats`, read its fds, memory and CPU from `/proc`, and end every test
//! the way nginx-tests do (fds back to the baseline, only the asking
//! connection open, SIGTERM gives exit 0, a clean log).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{Bin, TIMEOUT, http_get, wait_until};

pub static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time; a failed (poisoned) predecessor does not matter.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server process, its listen addresses and its fd baseline.
pub struct Server {
    pub bin: Bin,
    pub pid: u32,
    pub addrs: HashMap<String, String>,
    pub base_fds: usize,
}

/// `/proc/PID/fd` entries.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A `Key: value kB` field of `/proc/PID/status`.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
}

/// utime + stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let rest = &s[s.rfind(')').expect("comm in stat") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3: field 14 is f[11], field 15 is f[12].
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Parse `k=v` pairs (the `stopped:` summary line).
pub fn parse_kv(line: &str) -> HashMap<String, u64> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// Log lines at ERROR level, and panics.
pub fn bad_log_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("ERROR") || l.contains("panicked"))
        .map(str::to_string)
        .collect()
}

impl Server {
    /// `reactor serve ARGS... --http 127.0.0.1:0 --log-level info`.
    pub fn start(args: &[&str]) -> Server {
        Server::start_under(&[], args)
    }

    /// The same, under a wrapper such as `prlimit --nofile=64:64 --`.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Server {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        if !args.contains(&"--http") {
            full.extend_from_slice(&["--http", "127.0.0.1:0"]);
        }
        full.extend_from_slice(&["--log-level", "info"]);
        let mut bin = if wrapper.is_empty() {
            Bin::spawn(&full)
        } else {
            Bin::spawn_under(wrapper, &full)
        };
        let pid = bin.child.id();
        let ready = wait_until(TIMEOUT, || {
            bin.log_text().contains(": ready") || !matches!(bin.child.try_wait(), Ok(None))
        });
        let log = bin.log_text();
        assert!(
            ready && log.contains(": ready"),
            "server not ready within {TIMEOUT:?}; log:\n{log}"
        );
        let addrs = log
            .lines()
            .filter_map(|l| {
                let (head, addr) = l.split_once(" listening on ")?;
                let svc = head.split_whitespace().last()?;
                Some((svc.to_string(), addr.trim().to_string()))
            })
            .collect();
        let _ = bin.wait_exit(Duration::ZERO);
        let base_fds = fd_count(pid);
        Server {
            bin,
            pid,
            addrs,
            base_fds,
        }
    }

    pub fn addr(&self, svc: &str) -> SocketAddr {
        self.addrs
            .get(svc)
            .unwrap_or_else(|| panic!("no {svc} listener in {:?}", self.addrs))
            .parse()
            .unwrap()
    }

    pub fn unix_path(&self) -> String {
        self.addrs.get("unix").expect("no unix listener").clone()
    }

    pub fn fds(&self) -> usize {
        fd_count(self.pid)
    }

    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS:")
    }

    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.bin.child.try_wait(), Ok(None))
    }

    /// `GET /stats`, parsed.
    pub fn stats(&self) -> HashMap<String, u64> {
        let r = http_get(self.addr("http"), "/stats");
        assert_eq!(r.status, 200, "/stats: {}", r.status_line);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("/stats is JSON");
        v.as_object()
            .expect("/stats is an object")
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
            .collect()
    }

    /// The nginx-tests ending, short of stopping: the fd count is back to
    /// its baseline, `/stats` shows only itself open, the log is clean.
    pub fn check_clean(&mut self, what: &str) {
        assert!(self.alive(), "{what}: server died; log:\n{}", self.log());
        let mut last = HashMap::new();
        let ok = wait_until(Duration::from_secs(5), || {
            last = self.stats();
            last["open"] == 1 && last["accepted"] == last["closed"] + 1
        });
        assert!(ok, "{what}: /stats never showed open=1 (itself): {last:?}");
        let mut fds = 0;
        let ok = wait_until(Duration::from_secs(5), || {
            fds = self.fds();
            fds == self.base_fds
        });
        assert!(
            ok,
            "{what}: server fds {fds}, baseline {}; /proc/{}/fd: {:?}",
            self.base_fds,
            self.pid,
            fd_list(self.pid)
        );
        let bad = bad_log_lines(&self.log());
        assert!(bad.is_empty(), "{what}: bad log lines: {bad:#?}");
    }

    pub fn log(&self) -> String {
        self.bin.log_text()
    }

    /// Check clean, then SIGTERM: exit 0 within the grace, `open=0` in the
    /// summary, no ERROR or panic. Returns the summary's counters.
    pub fn stop(mut self, what: &str) -> HashMap<String, u64> {
        self.check_clean(what);
        self.stop_only(what, Duration::from_secs(5))
    }

    pub fn stop_only(&mut self, what: &str, within: Duration) -> HashMap<String, u64> {
        self.bin.signal("TERM");
        let st = self.bin.wait_exit(within);
        let log = self.bin.final_log();
        let st = st.unwrap_or_else(|| panic!("{what}: no exit {within:?} after SIGTERM:\n{log}"));
        assert_eq!(st.code(), Some(0), "{what}: exit status; log:\n{log}");
        let summary = log
            .lines()
            .rev()
            .find_map(|l| l.split_once("stopped: ").map(|(_, r)| parse_kv(r)))
            .unwrap_or_else(|| panic!("{what}: no `stopped:` line; log:\n{log}"));
        assert_eq!(summary.get("open"), Some(&0), "{what}: summary {summary:?}");
        let bad = bad_log_lines(&log);
        assert!(bad.is_empty(), "{what}: bad log lines: {bad:#?}");
        summary
    }
}

pub fn fd_list(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}
