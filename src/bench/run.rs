//! Running a workload: one event-loop thread per `--threads`, each with
//! its share of the connections and of the rate; a collector on the main
//! thread that merges the per-second ticks (the series, the live ticker)
//! and samples the server's `/proc` in the same run.

use std::io::{self, IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::cli::Common;
use super::hist::{self, histogram};
use super::kind;
use super::procstat::{self, ProcSample};
use super::record::{Recorder, Tick};
use super::text::fmt_ns;

/// Nanoseconds since the run's base instant.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The clock's zero.
    base: Instant,
    /// The wall-clock time at `base`.
    wall: SystemTime,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Clock {
        Clock {
            base: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of `ns` on this clock, in seconds since the
    /// Unix epoch (as the system clock had it when the clock started).
    pub fn unix_s(&self, ns: u64) -> f64 {
        let base = self.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        base.as_secs_f64() + ns as f64 / 1e9
    }

    /// The wall-clock time of this clock's zero, in nanoseconds since the
    /// Unix epoch: stamps that other processes on this machine (and, to
    /// their clocks' agreement, other machines) can read back.
    pub fn zero_wall_ns(&self) -> u64 {
        let base = self.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        base.as_nanos() as u64
    }

    /// Nanoseconds since zero.
    #[inline]
    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// The token of a [`Sleeper`]'s timer in the poll set; loops skip it.
pub const ALARM: mio::Token = mio::Token(usize::MAX);

/// How long a wait spins (zero-timeout polls) before it sleeps. A sleep
/// and a wake-up cost tens of microseconds of CPU here, the waker's too:
/// a server whose answer must wake a sleeping generator pays for that
/// wake-up on its own core (5-7% of nginx's throughput, measured; see
/// docs/BENCH.md). An event within this time costs neither.
const SPIN_NS: u64 = 50_000;

/// Waiting in `poll` until an event or a deadline, to the microsecond
/// when it counts.
///
/// First it spins for up to [`SPIN_NS`]: at load the next event is
/// usually that close, and catching it awake spares both sides a wake-up.
/// Then it sleeps. `epoll_wait` takes its timeout in whole milliseconds
/// (mio rounds up), so a loop that slept on it until its next scheduled
/// send woke up to 1 ms late, and in an open loop that lateness is
/// latency: it counts from the intended time. A precise sleeper keeps a
/// timerfd in the same poll set, armed for the deadline, which wakes the
/// loop within microseconds; the millisecond timeout stays as the
/// fallback. A closed loop has no schedule to keep and sleeps on the
/// timeout alone.
///
/// Waking itself takes time (tens of microseconds on a VM), and a
/// response that arrives while the loop sleeps is read that much late,
/// so service times include it. With `--busy-poll` the loop never sleeps.
/// Time spent spinning is measured, so the verdict can tell idle spinning
/// from work.
#[derive(Debug)]
pub struct Sleeper {
    /// The timerfd (precise sleepers only).
    timer: Option<crate::sys::TimerFd>,
    /// The deadline the timer is armed for (0: none), so an unchanged
    /// deadline costs no `timerfd_settime`.
    armed: u64,
    /// Never sleep (`--busy-poll`).
    busy: bool,
    /// Spinning before this (the warmup) is not counted.
    from: u64,
    /// Time spent in zero-timeout polls that returned no event, since
    /// `from` (ns).
    pub spun_ns: u64,
    /// Waits since `from` that went to sleep (a poll with a timeout);
    /// never any with `--busy-poll`.
    pub sleeps: u64,
}

impl Sleeper {
    /// A sleeper for a loop polling with `registry`, following `plan`
    /// (its `--busy-poll` and warmup); `precise` for loops that follow a
    /// schedule.
    pub fn new(registry: &mio::Registry, plan: &Plan, precise: bool) -> io::Result<Sleeper> {
        Sleeper::with(registry, precise, plan.busy_poll, plan.from)
    }

    /// [`Sleeper::new`] from its parts: `busy` (never sleep), and `from`,
    /// before which spinning is not counted.
    pub fn with(
        registry: &mio::Registry,
        precise: bool,
        busy: bool,
        from: u64,
    ) -> io::Result<Sleeper> {
        let timer = if precise && !busy {
            let t = crate::sys::TimerFd::new()?;
            use std::os::fd::AsRawFd;
            registry.register(
                &mut mio::unix::SourceFd(&t.as_raw_fd()),
                ALARM,
                mio::Interest::READABLE,
            )?;
            Some(t)
        } else {
            None
        };
        Ok(Sleeper {
            timer,
            armed: 0,
            busy,
            from,
            spun_ns: 0,
            sleeps: 0,
        })
    }

    /// Polls for events, returning by `deadline` (ns on `clock`) at the
    /// latest: spins, then sleeps. The timer is never read: the
    /// registration is edge-triggered, and each expiry is a new edge.
    /// Events may be empty (a deadline, a signal, a stale timer).
    pub fn wait(
        &mut self,
        poll: &mut mio::Poll,
        events: &mut mio::Events,
        clock: &Clock,
        deadline: u64,
    ) -> io::Result<()> {
        // Spin: at least one zero-timeout poll (a deadline already past
        // still takes the events that are ready), more until an event,
        // the deadline or SPIN_NS; the busy poller stops after one.
        let start = clock.now();
        let spin_until = if self.busy {
            start
        } else {
            deadline.min(start.saturating_add(SPIN_NS))
        };
        let mut now = start;
        loop {
            let before = now;
            poll_once(poll, events, Duration::ZERO)?;
            now = clock.now();
            if !events.is_empty() {
                return Ok(());
            }
            self.spun(before, now);
            if now >= spin_until {
                break;
            }
        }
        if self.busy || now >= deadline {
            return Ok(());
        }
        let left = deadline - now;
        if let Some(t) = &self.timer
            && self.armed != deadline
        {
            t.set(left)?;
            self.armed = deadline;
        }
        if now >= self.from {
            self.sleeps += 1;
        }
        poll_once(poll, events, Duration::from_nanos(left))
    }

    /// Counts spinning (and sleeps) only from `from` on.
    pub fn count_from(&mut self, from: u64) {
        self.from = from;
    }

    /// Counts `from..to` as spinning, the part after the warmup.
    fn spun(&mut self, from: u64, to: u64) {
        self.spun_ns += to.saturating_sub(from.max(self.from));
    }
}

/// One `poll`; `EINTR` is not an error (the events are then empty).
fn poll_once(poll: &mut mio::Poll, events: &mut mio::Events, timeout: Duration) -> io::Result<()> {
    match poll.poll(events, Some(timeout)) {
        Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
        _ => Ok(()),
    }
}

/// When a scheduled loop must wake: the next send (`sched`), or, once
/// sending stopped at `stop_at`, the last replies' timeout; never past
/// `next_tick` (the per-second ticker).
pub fn next_wake(sched: &Schedule, plan: &Plan, stop_at: u64, next_tick: u64) -> u64 {
    let wake = if stop_at == u64::MAX {
        sched.peek().min(plan.until)
    } else {
        stop_at.saturating_add(plan.timeout)
    };
    wake.min(next_tick)
}

/// Time zero of a run: the moment every thread has finished its setup
/// (its connections up, its members welcomed) and can send. Nothing is
/// scheduled before it, so no request waits for the workload to get ready
/// and counts that wait as latency; the warmup and the measured window
/// run from it.
#[derive(Debug)]
pub struct Gate {
    /// Which threads are through their setup, and time zero (ns on the
    /// run's clock) once all are.
    state: Mutex<(Vec<bool>, Option<u64>)>,
    /// Wakes the threads waiting for the others.
    all_ready: Condvar,
}

impl Gate {
    /// A gate for `threads` threads.
    fn new(threads: usize) -> Gate {
        Gate {
            state: Mutex::new((vec![false; threads], None)),
            all_ready: Condvar::new(),
        }
    }

    /// Thread `t` is through its setup (a second call changes nothing);
    /// the last one sets time zero to `now`. Returns the state after.
    fn pass(&self, t: usize, now: u64) -> std::sync::MutexGuard<'_, (Vec<bool>, Option<u64>)> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0[t] = true;
        if st.1.is_none() && st.0.iter().all(|&r| r) {
            st.1 = Some(now);
            self.all_ready.notify_all();
        }
        st
    }

    /// Thread `t` is ready: blocks until every thread is; returns time
    /// zero.
    fn ready(&self, t: usize, clock: &Clock) -> u64 {
        let mut st = self.pass(t, clock.now());
        loop {
            if let Some(zero) = st.1 {
                return zero;
            }
            st = self.all_ready.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Time zero, once every thread is ready.
    fn zero(&self) -> Option<u64> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// Lets the others go when its thread ends without having said it was
/// ready (an error in its setup, a panic): the gate must not hold them.
struct Leave(Arc<Gate>, usize, Clock);

impl Drop for Leave {
    fn drop(&mut self) {
        drop(self.0.pass(self.1, self.2.now()));
    }
}

/// What one thread is asked to do.
#[derive(Clone, Debug)]
pub struct Plan {
    /// This thread's number.
    pub thread: usize,
    /// Connections this thread drives.
    pub conns: usize,
    /// Global index of its first connection.
    pub first_conn: usize,
    /// Open loop: this thread's share of the rate, per second.
    pub rate: Option<f64>,
    /// Poisson arrivals instead of evenly spaced ones.
    pub poisson: bool,
    /// Seed for the Poisson gaps.
    pub seed: u64,
    /// The shared clock.
    pub clock: Clock,
    /// Time zero (ns on `clock`), set by [`Plan::start`]; 0 before.
    pub zero: u64,
    /// End of warmup: measuring starts (ns; relative to time zero until
    /// [`Plan::start`], on `clock` after).
    pub from: u64,
    /// End of the measured window (ns, as `from`); u64::MAX with a count.
    pub until: u64,
    /// Requests this thread starts (with `-n`).
    pub count: Option<u64>,
    /// Per-request timeout (ns).
    pub timeout: u64,
    /// `--source-ips`.
    pub source_ips: u8,
    /// `--busy-poll`: never sleep in `poll`.
    pub busy_poll: bool,
    /// Where each second's tick goes.
    pub ticks: Sender<(usize, Tick)>,
    /// Where the threads meet at time zero.
    gate: Arc<Gate>,
}

impl Plan {
    /// This thread's setup is done: waits for the others, then sets time
    /// zero and moves `from` and `until` onto the clock. The first tick
    /// is due a second after zero.
    pub fn start(&mut self) -> u64 {
        self.zero = self.gate.ready(self.thread, &self.clock);
        self.from += self.zero;
        self.until = self.until.saturating_add(self.zero);
        self.zero
    }

    /// Sends this thread's last second, cut short at `end`, to the
    /// collector (the series and the log then hold every request).
    pub fn last_tick(&self, rec: &mut Recorder, end: u64) {
        let start = self.zero + u64::from(rec.tick_sec()) * 1_000_000_000;
        let len = end.saturating_sub(start).min(1_000_000_000);
        let _ = self.ticks.send((self.thread, rec.take_tick(len)));
    }

    /// When this thread's first per-second tick is due.
    pub fn first_tick(&self) -> u64 {
        self.zero + 1_000_000_000
    }
}

/// What a thread hands back.
#[derive(Debug)]
pub struct ThreadOut {
    /// Its measurements.
    pub rec: Recorder,
    /// Its CPU time from the end of warmup to its end (ns).
    pub cpu_ns: u64,
    /// Time it was runnable but waited for a CPU (ns): a shared core.
    pub wait_ns: u64,
    /// Of its CPU time, the part spent spinning in polls that found
    /// nothing (ns): idle, though the CPU counts it.
    pub spin_ns: u64,
    /// Times it went to sleep in `poll`.
    pub sleeps: u64,
    /// When it stopped starting requests (ns).
    pub stop_at: u64,
    /// When it finished draining (ns).
    pub end_at: u64,
}

impl ThreadOut {
    /// A thread's result: `rec` (finished here), its CPU and wait time
    /// since `cpu_from` (the schedstat sample taken when measuring began),
    /// the sleeper's spin, and when it stopped sending and ended.
    pub fn new(
        mut rec: Recorder,
        cpu_from: Option<(u64, u64)>,
        sleeper: &Sleeper,
        stop_at: u64,
        end_at: u64,
    ) -> ThreadOut {
        rec.finish();
        let (run_ns, wait_ns) = procstat::thread_sched();
        let (run0, wait0) = cpu_from.unwrap_or_default();
        ThreadOut {
            rec,
            cpu_ns: run_ns.saturating_sub(run0),
            wait_ns: wait_ns.saturating_sub(wait0),
            spin_ns: sleeper.spun_ns,
            sleeps: sleeper.sleeps,
            stop_at: stop_at.min(end_at),
            end_at,
        }
    }
}

/// Arrival times of an open loop: evenly spaced, or Poisson.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The next arrival (ns, fractional to avoid drift).
    next: f64,
    /// Mean gap (ns).
    gap: f64,
    /// Exponential gaps.
    poisson: bool,
    /// xorshift64* state.
    rng: u64,
}

impl Schedule {
    /// Arrivals from `start` at `rate` per second.
    pub fn new(start: u64, rate: f64, poisson: bool, seed: u64) -> Schedule {
        let mut s = Schedule {
            next: start as f64,
            gap: 1e9 / rate.max(1e-9),
            poisson,
            rng: seed | 1,
        };
        if poisson {
            s.next += s.draw();
        }
        s
    }

    /// The next arrival's intended time (ns).
    #[inline]
    pub fn peek(&self) -> u64 {
        self.next as u64
    }

    /// Moves to the arrival after.
    #[inline]
    pub fn advance(&mut self) {
        self.next += if self.poisson { self.draw() } else { self.gap };
    }

    /// An exponential gap with mean `gap`.
    fn draw(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64; // (0, 1)
        -u.ln() * self.gap
    }
}

/// One second of the whole run, all threads merged.
#[derive(Clone, Debug)]
pub struct Second {
    /// Seconds since start (the first is 0).
    pub sec: u32,
    /// Part of the warmup.
    pub warmup: bool,
    /// Requests completed.
    pub requests: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Failures.
    pub errors: u64,
    /// Latency p50 (ns).
    pub p50: u64,
    /// Latency p99 (ns).
    pub p99: u64,
    /// Latency max (ns).
    pub max: u64,
    /// How long it lasted (ns): a second, but for the last one.
    pub len_ns: u64,
    /// The second's latency histogram, encoded (see [`hist::encode`]).
    pub hdr: String,
    /// Server CPU use in this second (1.0 = one core), with `--pid`.
    pub server_cpu: Option<f64>,
}

/// A merged run, ready to report.
#[derive(Debug)]
pub struct Merged {
    /// All threads' measurements.
    pub rec: Recorder,
    /// Each thread's CPU busy fraction over the measured part (its spin
    /// left out).
    pub thread_busy: Vec<f64>,
    /// Each thread's share of the run spent spinning for events.
    pub thread_spin: Vec<f64>,
    /// Each thread's share of the run spent waiting for a CPU.
    pub thread_wait: Vec<f64>,
    /// How many times each thread went to sleep in `poll`.
    pub thread_sleeps: Vec<u64>,
    /// The measured window (s): warmup end to stop.
    pub window_s: f64,
    /// The per-second series.
    pub series: Vec<Second>,
    /// Server samples at the window's start and end.
    pub server: Option<(ProcSample, ProcSample)>,
    /// Wall time of the window the server samples span (s).
    pub server_window_s: f64,
    /// Time zero, in seconds since the Unix epoch (the system clock).
    pub zero_unix_s: f64,
}

/// The part of a run that does not depend on the workload.
pub struct Setup<'a> {
    /// The shared flags.
    pub common: &'a Common,
    /// Connections in total.
    pub conns: usize,
    /// Threads (clamped to the connections).
    pub threads: usize,
}

/// Runs `work` on each thread with its plan; merges and collects.
pub fn drive<F>(setup: Setup<'_>, work: F) -> crate::Result<Merged>
where
    F: Fn(Plan) -> io::Result<ThreadOut> + Send + Sync + Clone + 'static,
{
    let c = setup.common;
    let threads = setup.threads.max(1);
    let clock = Clock::start();
    let from = c.warmup.as_nanos() as u64;
    let until = match c.count {
        Some(_) => u64::MAX,
        None => from + c.duration.as_nanos() as u64,
    };
    let (tx, rx) = mpsc::channel();
    let gate = Arc::new(Gate::new(threads));
    let mut handles = Vec::new();
    let mut first = 0;
    for t in 0..threads {
        let conns = setup.conns / threads + usize::from(t < setup.conns % threads);
        let plan = Plan {
            thread: t,
            conns,
            first_conn: first,
            rate: c.rate.map(|r| r / threads as f64),
            poisson: c.poisson,
            seed: 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1),
            clock,
            zero: 0,
            from,
            until,
            count: c
                .count
                .map(|n| n / threads as u64 + u64::from((t as u64) < n % threads as u64)),
            timeout: c.timeout.as_nanos() as u64,
            source_ips: c.source_ips,
            busy_poll: c.busy_poll,
            ticks: tx.clone(),
            gate: gate.clone(),
        };
        first += conns;
        let w = work.clone();
        let leave = Leave(gate.clone(), t, clock);
        let h = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || {
                let _leave = leave;
                w(plan)
            })
            .map_err(|e| kind::io("cannot start a thread", e))?;
        handles.push(h);
    }
    drop(tx);
    let mut col = Collector::new(threads, c, clock, from, until);
    if let Some(path) = &c.hdr_log {
        let f = std::fs::File::create(path)
            .map_err(|e| kind::io(format_args!("cannot write {}", path.display()), e))?;
        col.hdr_log = Some(HdrLog {
            out: io::BufWriter::new(f),
            begun: false,
        });
    }
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((_, tick)) => col.tick(tick),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if col.zero.is_none() {
            col.zero = gate.zero();
        }
        col.sample_server();
    }
    col.zero = col.zero.or(gate.zero());
    col.close_seconds(true);
    if let (Some(e), Some(path)) = (col.log_error.take(), &c.hdr_log) {
        return Err(kind::io(format_args!("cannot write {}", path.display()), e));
    }
    col.finish_ticker();
    let mut outs = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => outs.push(o),
            Ok(Err(e)) => return Err(kind::io("load thread failed", e)),
            Err(_) => return Err(kind::io("load thread", io::Error::other("panicked"))),
        }
    }
    Ok(col.merge(outs))
}

/// Gathers the ticks of every thread into seconds, prints the ticker and
/// samples the server.
struct Collector {
    /// Threads reporting.
    threads: usize,
    /// Seconds being filled: (threads reported, merged tick).
    pending: Vec<(usize, Tick)>,
    /// Seconds complete.
    series: Vec<Second>,
    /// Print a ticker line each second.
    ticker: bool,
    /// Server pids (their samples added up).
    pids: Vec<u32>,
    /// The clock.
    clock: Clock,
    /// Time zero, once the threads are ready.
    zero: Option<u64>,
    /// Window start (ns after time zero).
    from: u64,
    /// Window end (ns after time zero).
    until: u64,
    /// Server sample at the window's start, and when.
    start: Option<(ProcSample, u64)>,
    /// Server sample at the window's end, and when.
    end: Option<(ProcSample, u64)>,
    /// The last per-second server sample (for the series).
    last: Option<ProcSample>,
    /// `--hdr-log`: where each second's histogram goes.
    hdr_log: Option<HdrLog>,
    /// Why the log stopped, if a write failed.
    log_error: Option<io::Error>,
}

/// An HdrHistogram interval log (`--hdr-log`), as the Java
/// `HistogramLogWriter` writes it and its `HistogramLogProcessor` reads
/// it: a header, then one line per second, `START,LENGTH,MAX,HISTOGRAM`,
/// START in seconds after the BaseTime (time zero), MAX in ms (the
/// histograms hold ns).
struct HdrLog {
    /// The file.
    out: io::BufWriter<std::fs::File>,
    /// The header is written.
    begun: bool,
}

impl HdrLog {
    /// Writes second `s` of a run whose time zero was `zero` (Unix
    /// seconds) and whose warmup lasted `warmup_ns`.
    fn second(&mut self, zero: f64, warmup_ns: u64, s: &Second) -> io::Result<()> {
        if !self.begun {
            self.begun = true;
            let when = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs_f64(zero));
            writeln!(
                self.out,
                "#[Logged with reactor bench {}]",
                env!("CARGO_PKG_VERSION")
            )?;
            writeln!(self.out, "#[Histogram log format version 1.3]")?;
            writeln!(
                self.out,
                "#[StartTime: {zero:.3} (seconds since epoch), {when}]"
            )?;
            writeln!(self.out, "#[BaseTime: {zero:.3} (seconds since epoch)]")?;
            if warmup_ns > 0 {
                writeln!(self.out, "#[Warmup: until {:.3} s]", warmup_ns as f64 / 1e9)?;
            }
            writeln!(
                self.out,
                "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
            )?;
        }
        if s.len_ns == 0 {
            return Ok(()); // a run that ended on a second's edge
        }
        writeln!(
            self.out,
            "{}.000,{:.3},{:.3},{}",
            s.sec,
            s.len_ns as f64 / 1e9,
            s.max as f64 / 1e6,
            s.hdr
        )?;
        self.out.flush()
    }
}

impl Collector {
    /// A collector for `threads` threads.
    fn new(threads: usize, c: &Common, clock: Clock, from: u64, until: u64) -> Collector {
        Collector {
            threads,
            pending: Vec::new(),
            series: Vec::new(),
            ticker: !c.quiet && io::stderr().is_terminal(),
            pids: c.pid.clone(),
            clock,
            zero: None,
            from,
            until,
            start: None,
            end: None,
            last: procstat::sample_all(&c.pid),
            hdr_log: None,
            log_error: None,
        }
    }

    /// Samples the server at the window's edges.
    fn sample_server(&mut self) {
        let Some(zero) = self.zero.filter(|_| !self.pids.is_empty()) else {
            return;
        };
        let now = self.clock.now().saturating_sub(zero);
        if self.start.is_none() && now >= self.from {
            self.start = procstat::sample_all(&self.pids).map(|s| (s, now));
        }
        if self.end.is_none() && now >= self.until {
            self.end = procstat::sample_all(&self.pids).map(|s| (s, now));
        }
    }

    /// One thread's second.
    fn tick(&mut self, t: Tick) {
        let idx = t.sec as usize;
        while self.pending.len() <= idx {
            let sec = self.pending.len() as u32;
            self.pending.push((0, empty_tick(sec)));
        }
        let (n, acc) = &mut self.pending[idx];
        *n += 1;
        acc.requests += t.requests;
        acc.bytes_in += t.bytes_in;
        acc.bytes_out += t.bytes_out;
        acc.errors += t.errors;
        acc.len_ns = acc.len_ns.max(t.len_ns);
        let _ = acc.hist.add(&t.hist);
        if *n == self.threads && idx == self.series.len() {
            self.close_seconds(false);
        }
    }

    /// Moves every complete second, in order, into the series; with
    /// `all` (the threads are done), the incomplete ones too: threads that
    /// ended a second apart leave the last one short of a thread.
    fn close_seconds(&mut self, all: bool) {
        while let Some((n, t)) = self.pending.get(self.series.len()) {
            if *n < self.threads && !all {
                return;
            }
            let cpu = procstat::sample_all(&self.pids);
            let server_cpu = match (self.last, cpu) {
                (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
                _ => None,
            };
            self.last = cpu;
            let s = Second {
                sec: t.sec,
                warmup: (u64::from(t.sec) + 1) * 1_000_000_000 <= self.from,
                requests: t.requests,
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
                errors: t.errors,
                p50: t.hist.value_at_quantile(0.5),
                p99: t.hist.value_at_quantile(0.99),
                max: t.hist.max(),
                len_ns: t.len_ns,
                hdr: hist::encode(&t.hist),
                server_cpu,
            };
            self.log(&s);
            if self.ticker {
                eprint!("\r\x1b[K{}", ticker_line(&s));
                let _ = io::stderr().flush();
            }
            self.series.push(s);
        }
    }

    /// Appends second `s` to the `--hdr-log` file (its header first); a
    /// write that fails stops the log and is reported at the end.
    fn log(&mut self, s: &Second) {
        let Some(log) = &mut self.hdr_log else { return };
        let zero = self.clock.unix_s(self.zero.unwrap_or(0));
        let res = log.second(zero, self.from, s);
        if let Err(e) = res {
            self.log_error = Some(e);
            self.hdr_log = None;
        }
    }

    /// Ends the ticker's line.
    fn finish_ticker(&self) {
        if self.ticker && !self.series.is_empty() {
            eprint!("\r\x1b[K");
        }
    }

    /// Merges the threads' results.
    fn merge(mut self, outs: Vec<ThreadOut>) -> Merged {
        let zero = self.zero.unwrap_or(0);
        let (from, until) = (self.from + zero, self.until.saturating_add(zero));
        let mut rec = Recorder::new(from, until);
        let mut stop = 0;
        let mut thread_busy = Vec::new();
        let mut thread_wait = Vec::new();
        let mut thread_spin = Vec::new();
        let mut thread_sleeps = Vec::new();
        for o in &outs {
            rec.merge(&o.rec);
            stop = stop.max(o.stop_at);
            let span = o.end_at.saturating_sub(from).max(1) as f64;
            let spin = o.spin_ns.min(o.cpu_ns);
            thread_busy.push((o.cpu_ns - spin) as f64 / span);
            thread_spin.push(spin as f64 / span);
            thread_wait.push(o.wait_ns as f64 / span);
            thread_sleeps.push(o.sleeps);
        }
        let now = self.clock.now().saturating_sub(zero);
        if !self.pids.is_empty() {
            if self.start.is_none() {
                self.start = procstat::sample_all(&self.pids).map(|s| (s, now));
            }
            if self.end.is_none() {
                self.end = procstat::sample_all(&self.pids).map(|s| (s, now));
            }
        }
        let window_ns = stop.min(until).saturating_sub(from).max(1);
        let (server, server_window_s) = match (self.start, self.end) {
            (Some((a, ta)), Some((b, tb))) => (Some((a, b)), (tb.saturating_sub(ta)) as f64 / 1e9),
            _ => (None, 0.0),
        };
        Merged {
            zero_unix_s: self.clock.unix_s(zero),
            rec,
            thread_busy,
            thread_wait,
            thread_spin,
            thread_sleeps,
            window_s: window_ns as f64 / 1e9,
            series: self.series,
            server,
            server_window_s,
        }
    }
}

/// The one-line live ticker for second `s`.
fn ticker_line(s: &Second) -> String {
    format!(
        "[{:>4}s] {:>10} req/s  p50 {:>8}  p99 {:>8}  errors {}{}",
        s.sec + 1,
        s.requests,
        fmt_ns(s.p50),
        fmt_ns(s.p99),
        s.errors,
        if s.warmup { "  (warmup)" } else { "" }
    )
}

/// An empty second.
fn empty_tick(sec: u32) -> Tick {
    Tick {
        sec,
        requests: 0,
        bytes_in: 0,
        bytes_out: 0,
        errors: 0,
        hist: histogram(),
        len_ns: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits on `s` until `deadline`; returns whether the timer's event
    /// was seen (bounded: the deadline is a few ms away).
    fn wait_until(s: &mut Sleeper, poll: &mut mio::Poll, clock: &Clock, deadline: u64) -> bool {
        let mut events = mio::Events::with_capacity(8);
        let mut alarm = false;
        for _ in 0..1_000_000 {
            if clock.now() >= deadline {
                break;
            }
            s.wait(poll, &mut events, clock, deadline).unwrap();
            alarm |= events.iter().any(|e| e.token() == ALARM);
        }
        assert!(clock.now() >= deadline, "the wait loop gave up");
        alarm
    }

    #[test]
    fn precise_sleeper_is_woken_by_its_timer() {
        let mut poll = mio::Poll::new().unwrap();
        let clock = Clock::start();
        let mut s = Sleeper::with(poll.registry(), true, false, 0).unwrap();
        // A deadline 2.5 ms away: the timer is armed for it; the poll's
        // millisecond timeout (3 ms, rounded up) is only the fallback.
        let t0 = clock.now();
        let deadline = t0 + 2_500_000;
        let mut events = mio::Events::with_capacity(8);
        s.wait(&mut poll, &mut events, &clock, deadline).unwrap();
        let mut seen = events.iter().any(|e| e.token() == ALARM);
        // Whatever woke the first wait, the timer fires by the deadline.
        seen |= wait_until(&mut s, &mut poll, &clock, deadline + 50_000_000);
        assert!(seen, "no timer event");
        assert!(s.spun_ns > 0 && s.spun_ns <= clock.now() - t0);
    }

    #[test]
    fn busy_sleeper_spins_and_counts_it() {
        let mut poll = mio::Poll::new().unwrap();
        let clock = Clock::start();
        let mut s = Sleeper::with(poll.registry(), true, true, 0).unwrap();
        let t0 = clock.now();
        let alarm = wait_until(&mut s, &mut poll, &clock, t0 + 3_000_000);
        let spent = clock.now() - t0;
        assert!(!alarm, "a busy sleeper has no timer");
        assert!(
            s.spun_ns > 0 && s.spun_ns <= spent,
            "spun {} of {spent} ns",
            s.spun_ns
        );
        // Spinning before `from` (the warmup) is not counted.
        let mut w = Sleeper::with(poll.registry(), false, true, u64::MAX).unwrap();
        wait_until(&mut w, &mut poll, &clock, clock.now() + 1_000_000);
        assert_eq!(w.spun_ns, 0);
    }

    #[test]
    fn closed_loop_sleeper_sleeps_on_the_timeout() {
        let mut poll = mio::Poll::new().unwrap();
        let clock = Clock::start();
        let mut s = Sleeper::with(poll.registry(), false, false, 0).unwrap();
        let t0 = clock.now();
        let alarm = wait_until(&mut s, &mut poll, &clock, t0 + 2_000_000);
        assert!(!alarm);
        assert!(s.spun_ns > 0 && s.spun_ns <= clock.now() - t0);
    }

    #[test]
    fn a_wait_returns_ready_events_at_once() {
        // A readable socket: the first poll finds it, whether the deadline
        // is far away or already past, and none of that is spinning.
        let mut poll = mio::Poll::new().unwrap();
        let clock = Clock::start();
        let (a, mut b) = mio::net::UnixStream::pair().unwrap();
        let mut events = mio::Events::with_capacity(8);
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        for deadline in [u64::MAX, 0] {
            // A fresh registration sees the readable edge again.
            let _ = poll.registry().deregister(&mut b);
            poll.registry()
                .register(&mut b, mio::Token(7), mio::Interest::READABLE)
                .unwrap();
            let mut s = Sleeper::with(poll.registry(), false, false, 0).unwrap();
            s.wait(&mut poll, &mut events, &clock, deadline).unwrap();
            let seen = events.iter().any(|e| e.token() == mio::Token(7));
            assert!(seen, "deadline {deadline}");
            assert_eq!(s.spun_ns, 0);
        }
    }
}
