//! Reading `/proc`: the server's CPU time and RSS, our own threads' CPU
//! time (and wait for a CPU), and the machine (kernel, CPU model, cores) for the report.

use std::fs;

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// One sample of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU time, seconds (fields 14 and 15 of stat).
    pub cpu_s: f64,
    /// Resident set size, bytes (VmRSS of status).
    pub rss: u64,
}

/// Samples process `pid`; None if it is gone or unreadable.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu_s = stat_cpu_ticks(&stat)? as f64 / TICKS_PER_SEC;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_s,
        rss: status_rss(&status).unwrap_or(0),
    })
}

/// Samples every process of `pids` and adds them up (CPU time and RSS):
/// several servers as one. None if there are none, or one is gone.
pub fn sample_all(pids: &[u32]) -> Option<ProcSample> {
    let mut sum: Option<ProcSample> = None;
    for &pid in pids {
        let s = sample(pid)?;
        let t = sum.get_or_insert_with(ProcSample::default);
        t.cpu_s += s.cpu_s;
        t.rss += s.rss;
    }
    sum
}

/// utime + stime (fields 14 and 15) from a stat line. The command name
/// (field 2) may hold spaces and parentheses: count from the last ')'.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After ')': field 3 is first, so utime (14) is the 12th.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in bytes from a status file.
pub fn status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The calling thread's (time on CPU, time runnable but waiting for a
/// CPU), in ns; 0 for what cannot be read. The CPU time is the thread's
/// CPU clock, exact to this moment; the wait is schedstat's second field
/// (current whenever the thread runs: it grows only while it waits).
pub fn thread_sched() -> (u64, u64) {
    let s = fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let wait = s.split_whitespace().nth(1).and_then(|v| v.parse().ok());
    (crate::sys::thread_cpu_ns().unwrap_or(0), wait.unwrap_or(0))
}

/// The machine, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Environment {
    /// Kernel release (/proc/sys/kernel/osrelease).
    pub kernel: String,
    /// CPU model name (/proc/cpuinfo).
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// This program's version.
    pub reactor_version: &'static str,
}

/// Reads the environment; unknown parts are "unknown".
pub fn environment() -> Environment {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Environment {
        kernel,
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        reactor_version: env!("CARGO_PKG_VERSION"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 1 0 5 1000 50";
        assert_eq!(stat_cpu_ticks(stat), Some(280));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_rss_and_samples_self() {
        assert_eq!(
            status_rss("Name:\tx\nVmRSS:\t  1200 kB\n"),
            Some(1200 * 1024)
        );
        let me = sample(std::process::id()).expect("own /proc");
        assert!(me.rss > 0);
        assert!(thread_sched().0 > 0);
    }
}
