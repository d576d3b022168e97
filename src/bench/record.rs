//! What one thread measured: HdrHistograms (nanoseconds) and counters,
//! plus the current one-second interval for the live series. Recording
//! allocates nothing.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::hist::histogram;
use super::kind::Kind;
use super::stream::Handshake;

/// Status codes counted one by one (100 to 599); others count as 0.
const STATUS_CODES: usize = 600;

/// Failures by kind, indexed like [`Kind::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Errors(pub [u64; 7]);

impl Errors {
    /// Adds `n` failures of `kind`.
    pub fn add(&mut self, kind: Kind, n: u64) {
        self.0[kind as usize] += n;
    }

    /// Failures of `kind`.
    pub fn get(&self, kind: Kind) -> u64 {
        self.0[kind as usize]
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Errors) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// One second of one thread's run, sent to the collector.
#[derive(Debug)]
pub struct Tick {
    /// Seconds since the start (0: the first second, warmup included).
    pub sec: u32,
    /// Requests completed in this second.
    pub requests: u64,
    /// Bytes received in this second.
    pub bytes_in: u64,
    /// Bytes sent in this second.
    pub bytes_out: u64,
    /// Failures in this second.
    pub errors: u64,
    /// Latency (from intended send) of this second's requests.
    pub hist: Histogram<u64>,
    /// How long it lasted (ns): a second, but for the last one.
    pub len_ns: u64,
}

/// Everything one thread measured.
#[derive(Debug)]
pub struct Recorder {
    /// Latency from each request's intended send time (CO corrected).
    pub latency: Histogram<u64>,
    /// Service time: from the actual write to the answer.
    pub service: Histogram<u64>,
    /// How late the generator noticed each scheduled arrival (open loop).
    pub lag: Histogram<u64>,
    /// TCP connects: from the connect call to the connection confirmed.
    pub connect: Histogram<u64>,
    /// TLS handshakes: from the connection confirmed to the handshake done.
    pub handshake: Histogram<u64>,
    /// TLS: the first handshake's version, cipher suite and group.
    pub tls_params: Option<String>,
    /// Latency of named parts of the requests, each request also in
    /// `latency` (chat over several servers: `local`, deliveries from a
    /// sender on the receiver's server, and `remote`, from another).
    pub split: Vec<(&'static str, Histogram<u64>)>,
    /// Responses by status code (index = code), after the warmup.
    pub statuses: Box<[u64; STATUS_CODES]>,
    /// Of those, the ones counted as `status` errors.
    pub status_errors: Box<[u64; STATUS_CODES]>,
    /// Requests answered correctly after the warmup.
    pub requests: u64,
    /// Of those, the ones answered before the end of the measured window.
    pub in_window: u64,
    /// Bytes received after the warmup.
    pub bytes_in: u64,
    /// Bytes sent after the warmup.
    pub bytes_out: u64,
    /// Failures after the warmup.
    pub errors: Errors,
    /// Open loop: arrivals scheduled in the window but never sent (every
    /// connection was busy until the end).
    pub unsent: u64,
    /// Workload-specific counters (udp loss, chat deliveries, ...).
    pub extra: BTreeMap<&'static str, u64>,
    /// Chat in one room: per line measured, keyed by (sender, sequence),
    /// its deliveries here and the latency of the last of them (ns).
    pub lines: BTreeMap<(u64, u64), (u64, u64)>,
    /// Start of the measured window (end of warmup), ns since the base.
    pub from: u64,
    /// End of the measured window, ns since the base.
    pub until: u64,
    /// Service time is latency (closed loop: each request is sent when it
    /// is due), so `service` is filled from `latency` at the end instead
    /// of recording every request twice.
    service_is_latency: bool,
    /// The current second's counters and histogram.
    interval: Tick,
}

impl Recorder {
    /// A recorder that ignores everything before `from` (the warmup).
    pub fn new(from: u64, until: u64) -> Recorder {
        Recorder {
            latency: histogram(),
            service: histogram(),
            lag: histogram(),
            connect: histogram(),
            handshake: histogram(),
            tls_params: None,
            split: Vec::new(),
            statuses: Box::new([0; STATUS_CODES]),
            status_errors: Box::new([0; STATUS_CODES]),
            requests: 0,
            in_window: 0,
            bytes_in: 0,
            bytes_out: 0,
            errors: Errors::default(),
            unsent: 0,
            extra: BTreeMap::new(),
            lines: BTreeMap::new(),
            from,
            until,
            service_is_latency: false,
            interval: Tick {
                sec: 0,
                requests: 0,
                bytes_in: 0,
                bytes_out: 0,
                errors: 0,
                hist: histogram(),
                len_ns: 0,
            },
        }
    }

    /// Sets the measured window (after a setup whose failures count).
    pub fn set_window(&mut self, from: u64, until: u64) {
        self.from = from;
        self.until = until;
    }

    /// Declares that every request will be written when it is due
    /// (`intended == sent`), so service time need not be recorded apart.
    pub fn service_is_latency(mut self) -> Recorder {
        self.service_is_latency = true;
        self
    }

    /// Splits the latency into these parts too (see [`Recorder::part`]).
    pub fn split(mut self, names: &[&'static str]) -> Recorder {
        self.split = names.iter().map(|&n| (n, histogram())).collect();
        self
    }

    /// The request just [`done`](Recorder::done) at `now`, meant to be
    /// sent at `intended`, belongs to part `i` of the split too.
    #[inline]
    pub fn part(&mut self, i: usize, now: u64, intended: u64) {
        if now >= self.from
            && let Some((_, h)) = self.split.get_mut(i)
        {
            h.saturating_record(now.saturating_sub(intended));
        }
    }

    /// At the thread's end: fills what was recorded only once.
    pub fn finish(&mut self) {
        if self.service_is_latency {
            self.service = self.latency.clone();
        }
    }

    /// A request answered correctly at `now`, meant to be sent at
    /// `intended` and actually written at `sent`.
    #[inline]
    pub fn done(&mut self, now: u64, intended: u64, sent: u64) {
        debug_assert!(!self.service_is_latency || intended == sent);
        let lat = now.saturating_sub(intended);
        self.interval.requests += 1;
        self.interval.hist.saturating_record(lat);
        if now >= self.from {
            self.requests += 1;
            if now <= self.until {
                self.in_window += 1;
            }
            self.latency.saturating_record(lat);
            if !self.service_is_latency {
                self.service.saturating_record(now.saturating_sub(sent));
            }
        }
    }

    /// A response with status `code` (0: none) at `now`; `error`: it was
    /// counted as a failure.
    #[inline]
    pub fn status(&mut self, now: u64, code: u16, error: bool) {
        let i = usize::from(code);
        if code == 0 || i >= STATUS_CODES || now < self.from {
            return;
        }
        self.statuses[i] += 1;
        if error {
            self.status_errors[i] += 1;
        }
    }

    /// A TCP connect begun at `since` was confirmed at `now`.
    pub fn connected(&mut self, now: u64, since: u64) {
        if now >= self.from {
            self.connect.saturating_record(now.saturating_sub(since));
        }
    }

    /// A TLS handshake begun at `since` finished at `now`, as `h` says.
    pub fn handshaken(&mut self, now: u64, since: u64, h: &Handshake) {
        if self.tls_params.is_none() {
            self.tls_params = Some(h.params.clone());
        }
        if now >= self.from {
            self.handshake.saturating_record(now.saturating_sub(since));
            let kind = if h.resumed {
                "handshakes_resumed"
            } else {
                "handshakes_full"
            };
            *self.extra.entry(kind).or_insert(0) += 1;
        }
    }

    /// `n` failures of `kind` at `now`.
    pub fn error(&mut self, now: u64, kind: Kind, n: u64) {
        self.interval.errors += n;
        if now >= self.from {
            self.errors.add(kind, n);
        }
    }

    /// `n` bytes received at `now`.
    #[inline]
    pub fn read(&mut self, now: u64, n: usize) {
        self.interval.bytes_in += n as u64;
        if now >= self.from {
            self.bytes_in += n as u64;
        }
    }

    /// `n` bytes sent at `now`.
    #[inline]
    pub fn wrote(&mut self, now: u64, n: usize) {
        self.interval.bytes_out += n as u64;
        if now >= self.from {
            self.bytes_out += n as u64;
        }
    }

    /// An arrival scheduled for `intended` was noticed at `now`.
    #[inline]
    pub fn lagged(&mut self, now: u64, intended: u64) {
        if now >= self.from {
            self.lag.saturating_record(now.saturating_sub(intended));
        }
    }

    /// Adds `n` to the workload counter `name` (after the warmup only).
    pub fn count(&mut self, now: u64, name: &'static str, n: u64) {
        if now >= self.from {
            *self.extra.entry(name).or_insert(0) += n;
        }
    }

    /// The number of the current second.
    pub fn tick_sec(&self) -> u32 {
        self.interval.sec
    }

    /// Closes the current second, `len_ns` long (the last one may be
    /// shorter): returns its tick and starts the next (one histogram copy
    /// per second, none per request).
    pub fn take_tick(&mut self, len_ns: u64) -> Tick {
        let i = &mut self.interval;
        let tick = Tick {
            len_ns,
            sec: i.sec,
            requests: i.requests,
            bytes_in: i.bytes_in,
            bytes_out: i.bytes_out,
            errors: i.errors,
            hist: i.hist.clone(),
        };
        i.sec += 1;
        i.requests = 0;
        i.bytes_in = 0;
        i.bytes_out = 0;
        i.errors = 0;
        i.hist.reset();
        tick
    }

    /// Adds another thread's measurements into this one.
    pub fn merge(&mut self, o: &Recorder) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.service.add(&o.service);
        let _ = self.lag.add(&o.lag);
        let _ = self.connect.add(&o.connect);
        let _ = self.handshake.add(&o.handshake);
        if self.tls_params.is_none() {
            self.tls_params.clone_from(&o.tls_params);
        }
        for (name, h) in &o.split {
            match self.split.iter_mut().find(|(n, _)| *n == *name) {
                Some((_, into)) => {
                    let _ = into.add(h);
                }
                None => self.split.push((*name, h.clone())),
            }
        }
        for (a, b) in self.statuses.iter_mut().zip(o.statuses.iter()) {
            *a += b;
        }
        for (a, b) in self.status_errors.iter_mut().zip(o.status_errors.iter()) {
            *a += b;
        }
        self.requests += o.requests;
        self.in_window += o.in_window;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.errors.merge(&o.errors);
        self.unsent += o.unsent;
        for (k, v) in &o.extra {
            *self.extra.entry(k).or_insert(0) += v;
        }
        for (k, &(n, last)) in &o.lines {
            let e = self.lines.entry(*k).or_insert((0, 0));
            e.0 += n;
            e.1 = e.1.max(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_discarded_and_ticks_roll() {
        let mut r = Recorder::new(1_000_000, 2_000_000);
        r.done(500_000, 0, 0);
        r.done(1_500_000, 1_000_000, 1_200_000);
        r.error(10, Kind::Read, 1);
        r.error(1_500_000, Kind::Verify, 2);
        assert_eq!(r.requests, 1);
        assert_eq!(r.errors.total(), 2);
        let t = r.take_tick(1_000_000_000);
        assert_eq!((t.sec, t.requests, t.errors), (0, 2, 3));
        assert_eq!(t.hist.len(), 2);
        let t = r.take_tick(1_000_000_000);
        assert_eq!((t.sec, t.requests, t.hist.len()), (1, 0, 0));
    }

    #[test]
    fn parts_merge_by_name() {
        let mut a = Recorder::new(1_000, u64::MAX).split(&["local", "remote"]);
        a.part(1, 500, 0); // in the warmup
        a.part(1, 9_000, 1_000);
        a.part(0, 5_000, 1_000);
        let mut all = Recorder::new(0, u64::MAX);
        all.merge(&a);
        all.merge(&a);
        let lens: Vec<_> = all.split.iter().map(|(n, h)| (*n, h.len())).collect();
        assert_eq!(lens, [("local", 2), ("remote", 2)]);
    }

    #[test]
    fn service_copied_from_latency_at_the_end() {
        let mut r = Recorder::new(0, u64::MAX).service_is_latency();
        r.done(5_000_000, 2_000_000, 2_000_000);
        r.done(9_000_000, 8_000_000, 8_000_000);
        assert_eq!(r.service.len(), 0, "recorded once, not twice");
        r.finish();
        assert_eq!(r.service.len(), 2);
        assert_eq!(r.service.max(), r.latency.max());
        // Open loop keeps them apart: the wait for a slot is not service.
        let mut r = Recorder::new(0, u64::MAX);
        r.done(5_000_000, 1_000_000, 4_000_000);
        r.finish();
        assert!(r.service.max() < r.latency.max());
    }
}
